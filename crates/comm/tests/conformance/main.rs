//! The conformance suite: the same cases, run against every transport.
//!
//! Broker transports talk to the real servers of the machine (Redis on
//! 127.0.0.1:6379 unless VOLLEY_REDIS_URL says otherwise). Without a server a
//! case is skipped with a notice, except under CI=true, where it fails.

mod cases;
mod reductions;
mod services;

macro_rules! conformance {
    ($transport:ident) => {
        mod $transport {
            use super::cases;
            use super::reductions;
            use super::services;

            fn transport() -> Option<volley_comm::TransportOptions> {
                services::$transport()
            }

            #[test]
            fn point_to_point_keeps_order_and_tags_apart() {
                let Some(t) = transport() else { return };
                cases::point_to_point(t);
            }

            #[test]
            fn nonblocking_requests_complete() {
                let Some(t) = transport() else { return };
                cases::nonblocking(t);
            }

            #[test]
            fn large_messages_arrive_intact() {
                let Some(t) = transport() else { return };
                cases::large_messages(t);
            }

            #[test]
            fn held_large_messages_stay_intact() {
                let Some(t) = transport() else { return };
                cases::held_messages(t);
            }

            #[test]
            fn collectives_agree_with_a_sequential_model() {
                let Some(t) = transport() else { return };
                cases::collectives(t);
            }

            #[test]
            fn large_reductions_go_through_blocks_with_the_same_bits() {
                let Some(t) = transport() else { return };
                reductions::reductions_in_blocks(t);
            }

            #[test]
            fn reductions_along_a_tree_of_packs_keep_one_order() {
                let Some(t) = transport() else { return };
                reductions::reductions_along_a_tree(t);
            }

            #[test]
            fn async_and_blocking_workers_reduce_together() {
                let Some(t) = transport() else { return };
                reductions::async_and_blocking_together(t);
            }

            #[test]
            fn reductions_of_different_lengths_are_refused() {
                let Some(t) = transport() else { return };
                reductions::mismatched_lengths(t);
            }

            #[test]
            fn collectives_make_one_transfer_per_pack_pair() {
                let Some(t) = transport() else { return };
                cases::one_transfer_per_pack_pair(t);
            }

            #[test]
            fn repeated_collectives_never_mix() {
                let Some(t) = transport() else { return };
                cases::repeated_collectives(t);
            }

            #[test]
            fn in_pack_messages_are_not_copied() {
                let Some(t) = transport() else { return };
                cases::in_pack_zero_copy(t);
            }

            #[test]
            fn a_failed_worker_fails_every_pending_operation() {
                let Some(t) = transport() else { return };
                cases::failure_propagates(t);
            }

            #[test]
            fn a_message_that_never_comes_times_out() {
                let Some(t) = transport() else { return };
                cases::timeout(t);
            }

            #[test]
            fn bad_arguments_are_clear_errors() {
                let Some(t) = transport() else { return };
                cases::bad_arguments(t);
            }

            #[test]
            fn nothing_is_left_behind() {
                let Some(t) = transport() else { return };
                cases::nothing_left_behind(t);
            }
        }
    };
}

conformance!(tcp);
conformance!(uds);
conformance!(shm);
conformance!(redis);
conformance!(redis_streams);
conformance!(rabbitmq);
conformance!(nats);
conformance!(s3);
