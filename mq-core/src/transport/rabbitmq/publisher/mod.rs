//! Publishing to RabbitMQ: the sink of `amqp://<exchange>/<routing-key>` destinations
//! (the app's one publisher sends them here, everything else to the default transport).

mod direct_reply;
mod sink;

pub(crate) use sink::RabbitSink;
