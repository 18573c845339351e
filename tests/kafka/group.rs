//! The broker's consumer groups behave as the migration of a Kafka pipeline needs: when a
//! group's leader leaves while another member is joining (the old copy of a moved pipeline
//! closing just after the new copy subscribed), the member that stays becomes the leader and
//! gets every partition. tansu 0.6.0 as published keeps the departed member as leader and the
//! group never forms again; `.ci/tansu/build.sh` patches that, and this test fails on a broker
//! without the patch (docs/connectors.md, "Broker used by the tests").

use crate::broker::start_broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

/// A member of `group` subscribed to `topic`, heartbeating only every 10 s: it notices a
/// rebalance late, so a second member's join leaves the group re-forming for a while.
fn member(brokers: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("session.timeout.ms", "60000")
        .set("heartbeat.interval.ms", "10000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Polls `consumer` for `for_at_most`, until it owns `partitions` partitions; returns whether
/// it did.
async fn owns(consumer: &BaseConsumer, partitions: usize, for_at_most: Duration) -> bool {
    let deadline = Instant::now() + for_at_most;
    loop {
        // No records are produced: polling only serves the group protocol.
        let _ = consumer.poll(Duration::ZERO);
        let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if owned == partitions {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_leader_leaves_while_a_member_joins_gets_a_new_leader() {
    let Some(broker) = start_broker() else { return };
    broker.create_topic("group-in", 2).await;
    let group = format!("leader-leaves-{}", rand::random::<u32>());

    let first = member(&broker.addr, &group, "group-in");
    assert!(
        owns(&first, 2, Duration::from_secs(30)).await,
        "the first member never got the partitions"
    );
    // The second member joins (a few round trips on loopback): the group re-forms around the
    // first member, its leader, which only hears of it at its next heartbeat...
    let second = member(&broker.addr, &group, "group-in");
    let _ = owns(&second, 2, Duration::from_millis(500)).await;
    // ...and leaves before that (closing the consumer sends LeaveGroup).
    drop(first);

    assert!(
        owns(&second, 2, Duration::from_secs(30)).await,
        "the member that stayed never got the partitions after the leader left while the group \
         re-formed: a broker without .ci/tansu/forming-leave.patch (build it with \
         .ci/tansu/build.sh) never elects a new group leader there"
    );
}
