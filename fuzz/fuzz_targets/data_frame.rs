//! Fuzzes the data plane's frames: the header codec (re-encodes to its
//! input), signals, and opening arbitrary frames with a session's keys
//! (never panics; a frame that opens must have been sealed by the peer,
//! which the fuzzer cannot do, so none opens).
#![no_main]

use antq::node::data::{DataKeys, EXPORTER_LEN};
use antq::proto::data::{DataHeader, Signal};
use antq::proto::raw::{parse_raw, RawFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, sealed)) = DataHeader::decode(data) {
        assert_eq!(header.to_bytes()[..], data[..DataHeader::LEN]);
        assert_eq!(sealed, &data[DataHeader::LEN..]);
        assert_eq!(parse_raw(data), Ok(RawFrame::Data { header, sealed }));
        let mut keys = DataKeys::from_exporter(&[0x5a; EXPORTER_LEN], false);
        let mut buf = sealed.to_vec();
        assert!(keys.opener.open(header, &mut buf).is_err());
    }
    if let Ok(signal) = Signal::decode(data) {
        assert_eq!(signal.to_bytes()[..], data[..]);
    }
});
