//! Decoding records of our topics: JSON records as the processor reads them, and either wire
//! format (JSON, Confluent-framed Avro) through the Avro schemas of the three Avro topics.
#![no_main]

use std::sync::Arc;

use apache_avro::Schema;
use erp_schemas::avro::{AvroRecord, WriterSchemas, read_record};
use erp_schemas::inbound::InboundEventRecord;
use libfuzzer_sys::fuzz_target;

/// Every schema id names the record's own schema.
struct Own(AvroRecord);

impl WriterSchemas for Own {
    fn writer_schema(&self, _id: u32) -> Option<Arc<Schema>> {
        self.0.schema().ok().map(|schema| Arc::new(schema.clone()))
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = erp_schemas::error::decode::<InboundEventRecord>("inbound event", data);
    let _ = erp_schemas::error::decode::<erp_schemas::core_event::CoreEvent>("core event", data);
    let _ = erp_schemas::error::decode::<erp_schemas::delivery_task::DeliveryTask>("task", data);
    for record in AvroRecord::ALL {
        let _ = read_record(record, data, &Own(record));
    }
});
