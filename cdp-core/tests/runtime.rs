//! Integration tests of the pipeline runtime, on in-memory components.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod runtime {
    mod support;

    mod api;

    mod backpressure;
    mod cancel;
    mod dead_letter;
    mod delivery;
    mod flow;
    mod lease;
    mod micro_batch;
    mod retry;
    mod stages;
}
