//! The ack task on paused time: what it sends, and when, for deliveries the lane settles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::Delivery;

use super::{Acks, ACK_LINGER};
use crate::consume::LaneSource;

/// Acks of `batch` whose sends are recorded (the tag of each `multiple` ack; `None` for
/// an ack of a tag that was never delivered), with deliveries `1..=delivered`.
fn recorded(batch: u64, delivered: u64) -> (Acks, Arc<Mutex<Vec<Option<u64>>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let acks = Acks::start_with(true, batch, move |d: Option<(u64, lapin::Acker)>| {
        log.lock().unwrap().push(d.map(|(tag, _)| tag));
        async {}
    });
    for tag in 1..=delivered {
        let d = Delivery::mock(tag, "".into(), "q".into(), false, Vec::new());
        acks.delivered(tag, d.acker);
    }
    (acks, sent)
}

/// Lets the ack task run on whatever it was woken for (a microsecond of paused time:
/// earlier than any linger).
async fn settle() {
    tokio::time::sleep(Duration::from_micros(1)).await;
}

fn sent(log: &Arc<Mutex<Vec<Option<u64>>>>) -> Vec<Option<u64>> {
    log.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn settled_deliveries_wait_out_the_linger_then_go_in_one_ack_through_the_highest() {
    let (acks, log) = recorded(125, 10);
    acks.commit_through(1);
    acks.commit_through(2);
    acks.commit_through(3);
    settle().await;
    assert_eq!(sent(&log), vec![], "lingering: nothing sent yet");
    tokio::time::sleep(ACK_LINGER).await;
    assert_eq!(sent(&log), vec![Some(3)], "one multiple ack through 3");
    // A commit that goes back (or repeats) asks for nothing.
    acks.commit_through(2);
    tokio::time::sleep(ACK_LINGER * 2).await;
    assert_eq!(sent(&log), vec![Some(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_acked_at_once_without_the_linger() {
    let (acks, log) = recorded(4, 20);
    acks.commit_through(2);
    settle().await;
    acks.commit_through(5); // 5 settled past the last ack (0): at least a batch of 4
    settle().await;
    assert_eq!(sent(&log), vec![Some(5)], "no linger for a full batch");
    acks.commit_through(9); // 4 past 5
    settle().await;
    assert_eq!(sent(&log), vec![Some(5), Some(9)]);
}

#[tokio::test(start_paused = true)]
async fn a_flush_sends_what_is_settled_and_returns_after_it() {
    let (acks, log) = recorded(125, 10);
    acks.commit_through(7);
    acks.flush().await;
    assert_eq!(
        sent(&log),
        vec![Some(7)],
        "flushed without waiting the linger"
    );
    // Nothing settled past the last ack: a flush sends nothing and still returns.
    acks.flush().await;
    assert_eq!(sent(&log), vec![Some(7)]);
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_consumer_acks_what_is_settled() {
    let (acks, log) = recorded(125, 10);
    acks.commit_through(4);
    drop(acks);
    settle().await;
    assert_eq!(sent(&log), vec![Some(4)]);
}

#[tokio::test(start_paused = true)]
async fn a_tag_never_delivered_on_this_channel_is_not_acked() {
    // A commit through 12 with deliveries 1..=10: the broker would close the channel for
    // an unknown tag, so no acker is used (a `None` send), and 1..=10 are forgotten.
    let (acks, log) = recorded(125, 10);
    acks.commit_through(12);
    acks.flush().await;
    assert_eq!(sent(&log), vec![None]);
}

#[tokio::test(start_paused = true)]
async fn auto_ack_mode_sends_nothing() {
    let sent = Arc::new(Mutex::new(0));
    let log = sent.clone();
    let acks = Acks::start_with(false, 1, move |_| {
        *log.lock().unwrap() += 1;
        async {}
    });
    let d = Delivery::mock(1, "".into(), "q".into(), false, Vec::new());
    acks.delivered(1, d.acker);
    acks.commit_through(1);
    acks.flush().await;
    drop(acks);
    settle().await;
    assert_eq!(*sent.lock().unwrap(), 0);
}
