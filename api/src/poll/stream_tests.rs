use super::*;

const DAY: i64 = 24 * 3600 * 1000;
const VISIBILITY: i64 = 300_000;

fn item(n: i64, policy: PoisonPolicy, max: u32) -> PollItem {
    PollItem {
        id: format!("msg_{n}"),
        org_id: "org".into(),
        integration_id: "int".into(),
        use_case_id: "uc".into(),
        event_name: "ContractUpdated".into(),
        event_id: format!("evt-{n}"),
        payload: json!({"n": n}),
        enqueued_at: String::new(),
        enqueued_at_ms: 0,
        retention_days: 30,
        max_delivery_attempts: max,
        poison_policy: policy,
    }
}

/// A stream with messages 0..n at offsets 10, 20, … (other integrations sit in between).
fn stream(n: i64, policy: PoisonPolicy, max: u32) -> Stream {
    let mut s = Stream::new("int");
    for i in 0..n {
        assert!(s.enqueue(0, 10 * (i + 1), item(i, policy, max)));
    }
    s
}

fn limits(limit: usize) -> PollLimits {
    PollLimits {
        limit,
        max_bytes: usize::MAX,
        visibility_ms: VISIBILITY,
    }
}

fn poll(s: &mut Stream, now: i64, limit: usize, token: &str) -> (Vec<String>, bool, Effects) {
    let change = s.poll(now, limits(limit), token);
    s.commit(change.state);
    let ids = change
        .result
        .messages
        .iter()
        .map(|m| m.id.clone())
        .collect();
    (ids, change.result.has_more, change.effects)
}

fn ack(s: &mut Stream, now: i64, acks: &[(&str, &str)]) -> (Vec<Result<(), Rejection>>, Effects) {
    let acks: Vec<(String, String)> = acks
        .iter()
        .map(|(i, t)| ((*i).to_owned(), (*t).to_owned()))
        .collect();
    let change = s.ack(now, &acks);
    s.commit(change.state);
    (change.result, change.effects)
}

fn codes(effects: &Effects) -> Vec<&'static str> {
    effects.spans.iter().map(|s| s.code).collect()
}

#[test]
fn a_lease_hides_its_run_and_one_lease_per_stream() {
    let mut s = stream(3, PoisonPolicy::DeadLetter, 5);
    let (ids, more, _) = poll(&mut s, 0, 2, "lt_1");
    assert_eq!(ids, ["msg_0", "msg_1"]);
    assert!(more);
    let (ids, _, _) = poll(&mut s, 1, 10, "lt_2");
    assert!(ids.is_empty(), "a concurrent poll gets nothing");
    assert_eq!(s.state.last_poll_at_ms, Some(0));
}

#[test]
fn an_unacked_run_is_redelivered_with_a_new_token_and_the_same_ids() {
    let mut s = stream(2, PoisonPolicy::DeadLetter, 5);
    poll(&mut s, 0, 10, "lt_1");
    let (ids, _, _) = poll(&mut s, VISIBILITY - 1, 10, "lt_2");
    assert!(ids.is_empty());
    let (ids, more, effects) = poll(&mut s, VISIBILITY, 10, "lt_2");
    assert_eq!(ids, ["msg_0", "msg_1"]);
    assert!(!more);
    assert!(effects.spans.is_empty(), "lease lapses are not reported");
    assert_eq!(s.state.attempts.get(&10), Some(&2));
    let (results, _) = ack(&mut s, VISIBILITY, &[("msg_0", "lt_1")]);
    assert_eq!(results, [Err(Rejection::StaleLease)]);
}

#[test]
fn acks_are_prefix_contiguous_and_advance_the_cursor() {
    let mut s = stream(4, PoisonPolicy::DeadLetter, 5);
    poll(&mut s, 0, 3, "lt_1");
    let (results, effects) = ack(
        &mut s,
        1,
        &[
            ("msg_0", "lt_1"),
            ("msg_2", "lt_1"),
            ("msg_3", "lt_1"),
            ("msg_9", "lt_1"),
            ("msg_1", "lt_x"),
        ],
    );
    assert_eq!(
        results,
        [
            Ok(()),
            Err(Rejection::OutOfOrder),
            Err(Rejection::OutOfOrder),
            Err(Rejection::NotFound),
            Err(Rejection::StaleLease)
        ]
    );
    assert_eq!(codes(&effects), ["MSG_ACKED"]);
    assert_eq!(s.state.cursor, 11);
    assert_eq!(s.state.last_ack_at_ms, Some(1));
    // The rest of the run stays leased; acking it in order, in any input order, ends the lease.
    let (results, _) = ack(&mut s, 2, &[("msg_2", "lt_1"), ("msg_1", "lt_1")]);
    assert_eq!(results, [Ok(()), Ok(())]);
    assert!(s.state.lease.is_none());
    let (results, _) = ack(&mut s, 3, &[("msg_0", "lt_1")]);
    assert_eq!(results, [Err(Rejection::NotFound)], "acked means gone");
    let (ids, more, _) = poll(&mut s, 3, 10, "lt_2");
    assert_eq!(ids, ["msg_3"], "acked messages are never delivered again");
    assert!(!more);
    assert_eq!(s.depth(), 1);
}

#[test]
fn copies_and_messages_before_the_cursor_are_dropped() {
    let mut s = stream(2, PoisonPolicy::DeadLetter, 5);
    assert!(!s.enqueue(0, 30, item(0, PoisonPolicy::DeadLetter, 5)));
    poll(&mut s, 0, 1, "lt_1");
    ack(&mut s, 0, &[("msg_0", "lt_1")]);
    assert!(!s.enqueue(0, 5, item(7, PoisonPolicy::DeadLetter, 5)));
    assert_eq!(s.depth(), 1);
}

#[test]
fn dead_letter_moves_the_exhausted_head_and_the_stream_flows_on() {
    let mut s = stream(2, PoisonPolicy::DeadLetter, 2);
    poll(&mut s, 0, 1, "lt_1");
    poll(&mut s, VISIBILITY, 1, "lt_2");
    let (ids, _, effects) = poll(&mut s, 2 * VISIBILITY, 1, "lt_3");
    assert_eq!(ids, ["msg_1"], "the next message becomes the head");
    assert_eq!(codes(&effects), ["MSG_DEAD_LETTERED"]);
    assert_eq!(effects.spans[0].detail["delivery_attempts"], 2);
    assert_eq!(effects.dlq_put.len(), 1);
    let (page, more) = s.dlq_page(None, 25);
    assert!(!more);
    assert_eq!(page[0].item.id, "msg_0");
    assert_eq!(page[0].delivery_attempts, 2);
    assert_eq!(page[0].expires_at_ms, 2 * VISIBILITY + 30 * DAY);
}

#[test]
fn block_halts_the_stream_once_per_episode_until_ack_or_unblock() {
    let mut s = stream(2, PoisonPolicy::Block, 1);
    poll(&mut s, 0, 1, "lt_1");
    let (ids, more, effects) = poll(&mut s, VISIBILITY, 10, "lt_2");
    assert!(ids.is_empty() && !more);
    assert_eq!(codes(&effects), ["MSG_HEAD_BLOCKED"]);
    let (_, _, effects) = poll(&mut s, VISIBILITY + 1, 10, "lt_3");
    assert!(effects.spans.is_empty(), "reported once per episode");
    // The consumer may still ack the head under its last lease.
    let (results, _) = ack(&mut s, VISIBILITY + 2, &[("msg_0", "lt_1")]);
    assert_eq!(results, [Ok(())]);
    assert!(s.state.blocked.is_none());
    let (ids, _, _) = poll(&mut s, VISIBILITY + 3, 10, "lt_4");
    assert_eq!(ids, ["msg_1"]);

    // Or an operator skips it.
    let change = s.unblock(2 * VISIBILITY + 2, None);
    assert_eq!(change.result, None, "not blocked: a no-op");
    let change = s.tick(2 * VISIBILITY + 3);
    assert_eq!(codes(&change.effects), ["MSG_HEAD_BLOCKED"]);
    s.commit(change.state);
    let change = s.unblock(2 * VISIBILITY + 4, Some("bad payload"));
    assert_eq!(change.result.as_deref(), Some("msg_1"));
    assert_eq!(codes(&change.effects), ["MSG_DEAD_LETTERED"]);
    assert_eq!(change.effects.dlq_put[0].reason, "bad payload");
    s.commit(change.state);
    assert!(s.state.blocked.is_none());
    assert_eq!(s.depth(), 0);
}

#[test]
fn redrive_re_enqueues_at_the_tail_with_a_new_id() {
    let mut s = stream(2, PoisonPolicy::DeadLetter, 1);
    poll(&mut s, 0, 1, "lt_1");
    let change = s.tick(VISIBILITY);
    s.commit(change.state);
    let change = s.redrive(VISIBILITY + 1, &["msg_0".into(), "msg_404".into()]);
    assert_eq!(change.result, [true, false]);
    assert_eq!(change.effects.dlq_delete, ["msg_0"]);
    let copy = change.effects.enqueue[0].clone();
    assert_ne!(copy.id, "msg_0");
    assert_eq!(copy.enqueued_at_ms, VISIBILITY + 1, "fresh retention");
    let again = s.redrive(VISIBILITY + 5, &["msg_0".into()]);
    assert_eq!(
        again.effects.enqueue[0].id, copy.id,
        "a repeated redrive gives the same id"
    );
    s.commit(change.state);
    assert!(s.state.dlq.is_empty());
    assert!(s.enqueue(0, 100, copy.clone()));
    let (ids, _, _) = poll(&mut s, VISIBILITY + 2, 10, "lt_2");
    assert_eq!(ids, ["msg_1".to_owned(), copy.id.clone()]);
    assert_eq!(s.state.attempts.get(&100), Some(&1), "zero attempts before");
}

#[test]
fn expired_messages_are_never_delivered() {
    let mut s = Stream::new("int");
    let mut short = item(0, PoisonPolicy::DeadLetter, 5);
    short.retention_days = 1;
    s.enqueue(0, 10, short.clone());
    s.enqueue(0, 20, item(1, PoisonPolicy::DeadLetter, 5));
    let mut later = short.clone();
    later.id = "msg_2".into();
    s.enqueue(0, 30, later);
    // Never polled: MSG_EXPIRED_UNPOLLED.
    let (ids, more, effects) = poll(&mut s, DAY, 10, "lt_1");
    assert_eq!(ids, ["msg_1"], "an expired message ends the run");
    assert!(more);
    assert_eq!(codes(&effects), ["MSG_EXPIRED_UNPOLLED"]);
    ack(&mut s, DAY, &[("msg_1", "lt_1")]);
    let (ids, more, effects) = poll(&mut s, DAY + 1, 10, "lt_2");
    assert!(ids.is_empty() && !more);
    assert_eq!(codes(&effects), ["MSG_EXPIRED_UNPOLLED"]);

    // Polled once, then expired: dropped without the unpolled error.
    let mut s = Stream::new("int");
    s.enqueue(0, 10, short);
    poll(&mut s, 0, 10, "lt_1");
    let (ids, _, effects) = poll(&mut s, DAY, 10, "lt_2");
    assert!(ids.is_empty());
    assert!(effects.spans.is_empty());
    assert_eq!(s.depth(), 0);
}

#[test]
fn the_byte_cap_shortens_the_run_but_never_to_nothing() {
    let mut s = stream(3, PoisonPolicy::DeadLetter, 5);
    let change = s.poll(
        0,
        PollLimits {
            limit: 10,
            max_bytes: 1,
            visibility_ms: VISIBILITY,
        },
        "lt_1",
    );
    assert_eq!(change.result.messages.len(), 1);
    assert!(change.result.has_more);
    s.commit(change.state);
}

#[test]
fn snapshots_restore_the_consumer_state() {
    let mut s = stream(3, PoisonPolicy::DeadLetter, 5);
    poll(&mut s, 0, 2, "lt_1");
    ack(&mut s, 1, &[("msg_0", "lt_1")]);
    let snapshot = s.state.snapshot();
    let mut restored = Stream::new("int");
    // Items may arrive before or after the snapshot.
    restored.enqueue(0, 10, item(0, PoisonPolicy::DeadLetter, 5));
    restored.apply_snapshot(snapshot);
    restored.enqueue(0, 20, item(1, PoisonPolicy::DeadLetter, 5));
    restored.enqueue(0, 30, item(2, PoisonPolicy::DeadLetter, 5));
    assert_eq!(restored.depth(), 2);
    let (results, _) = ack(&mut restored, 2, &[("msg_1", "lt_1")]);
    assert_eq!(results, [Ok(())], "the lease survives");
    let (ids, _, _) = poll(&mut restored, 3, 10, "lt_2");
    assert_eq!(ids, ["msg_2"]);
}
