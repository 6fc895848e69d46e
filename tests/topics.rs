//! Topics are checked, not assumed: on the embedded broker, topics created by the project pass
//! their own check (with the broker's default replication factor), and topics created wrong
//! beforehand refuse the start with what to change (critical) or are only logged (minor).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{KafkaSettings, RuntimeError};
use erp_schemas::topics::Topics;
use erp_toolkit::broker::EmbeddedBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_topics_are_checked_against_what_the_project_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = EmbeddedBroker::start(
        &dir.path().join("kafka"),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("broker starts");
    let mut kafka = KafkaSettings::new(broker.address().to_string());
    kafka.partitions = 3;
    assert_eq!(kafka.replication_factor, -1, "the broker's default");

    // What the project creates passes its own check, at every later start.
    ensure_topics(&kafka, &standard_topics(&kafka))
        .await
        .expect("topics created with the broker's default replication");
    ensure_topics(&kafka, &standard_topics(&kafka))
        .await
        .expect("the topics created pass the check");

    // Under another prefix, three topics created wrong beforehand: a configuration log with a
    // finite retention and a state topic that is not compacted (critical), and a monitoring
    // topic with fewer partitions (minor).
    let mut wrong = kafka.clone();
    wrong.topics = Topics::new("wrong");
    let admin: AdminClient<DefaultClientContext> = wrong
        .client_config("test-admin")
        .create()
        .expect("admin client");
    let (config, acks, monitoring) = (
        wrong.topics.config(),
        wrong.topics.acks(),
        wrong.topics.monitoring(),
    );
    let topics = [
        NewTopic::new(&config, 1, TopicReplication::Fixed(1)).set("retention.ms", "86400000"),
        NewTopic::new(&acks, 3, TopicReplication::Fixed(1)),
        NewTopic::new(&monitoring, 1, TopicReplication::Fixed(1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for created in admin
        .create_topics(&topics, &options)
        .await
        .expect("created")
    {
        created.expect("topic created");
    }
    let refused = ensure_topics(&wrong, &standard_topics(&wrong)).await;
    let Err(RuntimeError::TopicMismatch(message)) = refused else {
        panic!("a wrong configuration log must refuse the start: {refused:?}");
    };
    assert!(
        message.contains(&config) && message.contains("retention.ms=-1"),
        "{message}"
    );
    assert!(
        message.contains(&acks) && message.contains("cleanup.policy=compact"),
        "{message}"
    );
    assert!(
        !message.contains(&monitoring),
        "fewer partitions are only a warning: {message}"
    );
    broker.stop().await;
}
