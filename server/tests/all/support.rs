//! Shared helpers: the reference requests and small builders.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use gavel::runtime::{Runtime, RuntimeConfig};

pub fn openrtb_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/openrtb-2.6");
    assert!(
        dir.is_dir(),
        "the OpenRTB 2.6 reference folder is missing: expected {}",
        dir.display()
    );
    dir
}

/// An IAB example request, e.g. `simple-banner`, as JSON.
pub fn example_json(name: &str) -> Vec<u8> {
    let path = openrtb_dir().join(format!("jsonschema/examples/bid-requests/{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// JSON -> request flatbuffer.
pub fn flatbuffer(json: &[u8]) -> Vec<u8> {
    gavel_schemas::json::Encoder::new()
        .bid_request(json)
        .expect("valid test request")
        .to_vec()
}

/// One engine for the whole test binary: the pooling allocator reserves
/// address space per slot, so engines are not made per test.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let config = RuntimeConfig {
                instances_max: 256,
                ..RuntimeConfig::default()
            };
            Arc::new(Runtime::new(config).expect("engine"))
        })
        .clone()
}

/// Compiles WAT text to wasm bytes.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}
