//! What other producers send: Spring AMQP's plain JSON, binary-mode CloudEvents.

use std::sync::Mutex;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::*;

// --- Spring AMQP's Jackson2JsonMessageConverter --------------------------------------

static SPRING: Mutex<Vec<Task>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_spring")]
async fn on_spring(event: Event<Task>) -> Result<(), HandlerError> {
    SPRING.lock().unwrap().push(event.data);
    Ok(())
}

#[tokio::test]
async fn spring_amqp_plain_json_with_a_type_id_decodes() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_spring").await;
    let running = start("on_spring", "").await;
    let mut headers = FieldTable::default();
    headers.insert(
        "__TypeId__".into(),
        AMQPValue::LongString(LongString::from("com.example.Task")),
    );
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("UTF-8".into())
        .with_delivery_mode(2)
        .with_headers(headers);
    ch.basic_publish(
        "".into(),
        "mq_t_spring".into(),
        BasicPublishOptions::default(),
        br#"{"n":42}"#,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_for("handled", || !SPRING.lock().unwrap().is_empty()).await;
    running.shutdown().await.unwrap();
    assert_eq!(SPRING.lock().unwrap().as_slice(), &[Task { n: 42 }]);
    assert!(drain(&ch, "mq_t_spring.dlq").await.is_empty());
}

// --- CloudEvents AMQP binding, binary mode -------------------------------------------

static BINARY: Mutex<Vec<(String, String, u32)>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_ce_binary")]
async fn on_ce_binary(event: Event<Task>) -> Result<(), HandlerError> {
    BINARY
        .lock()
        .unwrap()
        .push((event.id.clone(), event.source.clone(), event.data.n));
    Ok(())
}

#[tokio::test]
async fn binary_mode_cloud_events_in_application_properties_decode_with_either_prefix() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_ce_binary").await;
    let running = start("on_ce_binary", "").await;
    for (i, prefix) in ["cloudEvents:", "cloudEvents_"].into_iter().enumerate() {
        let mut headers = FieldTable::default();
        for (attr, value) in [
            ("specversion", "1.0".to_owned()),
            ("id", format!("ce-{i}")),
            ("source", "/java-service".to_owned()),
            ("type", "com.example.Task".to_owned()),
        ] {
            headers.insert(
                format!("{prefix}{attr}").into(),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        let body = format!(r#"{{"n":{i}}}"#);
        ch.basic_publish(
            "".into(),
            "mq_t_ce_binary".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    wait_for("both handled", || BINARY.lock().unwrap().len() == 2).await;
    running.shutdown().await.unwrap();
    let seen = BINARY.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("ce-0".to_owned(), "/java-service".to_owned(), 0),
            ("ce-1".to_owned(), "/java-service".to_owned(), 1)
        ]
    );
}
