//! The pollable outbound queue (epilot spec §8.4): one FIFO stream per integration that the
//! ERP middleware leases from and acknowledges, with a visibility timeout, prefix-contiguous
//! acks, a poison policy, retention and a DLQ. `stream` is the state machine.

pub mod stream;
