//! Upload-time checks of a strategy module against ABI v1
//! (`strategies/sdk/ABI.md`): default deny.

use wasmtime::{ExternType, FuncType, Module, ValType};

/// Why a module (or its settings) was refused. Each message names the
/// reason so that a tenant can fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectReason {
    #[error("module is {bytes} bytes, over the {bytes_max}-byte limit")]
    TooLarge { bytes: usize, bytes_max: usize },
    #[error("module does not compile: {0}")]
    Compile(String),
    #[error("import not allowed: {0}")]
    Imports(String),
    #[error("exports: {0}")]
    Exports(String),
    #[error("memory: {0}")]
    Memory(String),
    #[error("settings: {0}")]
    Settings(String),
    #[error("init failed: {0}")]
    Init(String),
    #[error("smoke test failed: {0}")]
    Smoke(String),
}

/// The module namespace of every ABI v1 import.
pub const IMPORT_MODULE: &str = "gavel_v1";
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_INPUT: &str = "gavel_v1_input";
pub const EXPORT_BID: &str = "gavel_v1_bid";
pub const EXPORT_INIT: &str = "gavel_v1_init";

/// Bytes in one wasm page.
const PAGE_BYTES: u64 = 64 << 10;

pub fn check_size(wasm: &[u8], bytes_max: usize) -> Result<(), RejectReason> {
    if wasm.len() > bytes_max {
        return Err(RejectReason::TooLarge {
            bytes: wasm.len(),
            bytes_max,
        });
    }
    Ok(())
}

/// What the checks learned about a valid module.
pub struct Abi {
    pub has_init: bool,
}

fn signature(ty: &FuncType) -> (Vec<&'static str>, Vec<&'static str>) {
    let name = |t: ValType| match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    };
    (
        ty.params().map(name).collect(),
        ty.results().map(name).collect(),
    )
}

fn expect_func(
    name: &str,
    ty: &ExternType,
    params: &[&str],
    results: &[&str],
) -> Result<(), String> {
    let ExternType::Func(f) = ty else {
        return Err(format!("`{name}` must be a function"));
    };
    let (p, r) = signature(f);
    if p != params || r != results {
        return Err(format!(
            "`{name}` has type ({}) -> ({}), expected ({}) -> ({})",
            p.join(", "),
            r.join(", "),
            params.join(", "),
            results.join(", ")
        ));
    }
    Ok(())
}

/// Imports only from `gavel_v1` with the right signatures; the required
/// exports with the right types; a memory within the tenant's cap.
pub fn check_abi(module: &Module, memory_bytes_max: u64) -> Result<Abi, RejectReason> {
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        if module_name != IMPORT_MODULE {
            return Err(RejectReason::Imports(format!(
                "`{module_name}::{name}`: only `{IMPORT_MODULE}` imports are allowed (no WASI)"
            )));
        }
        let result = match name {
            "log" => expect_func(name, &import.ty(), &["i32", "i32"], &[]),
            "request_time_us" => expect_func(name, &import.ty(), &[], &["i64"]),
            _ => Err(format!("`{IMPORT_MODULE}::{name}` is not part of ABI v1")),
        };
        result.map_err(RejectReason::Imports)?;
    }

    let mut has_memory = false;
    let mut has_input = false;
    let mut has_bid = false;
    let mut has_init = false;
    for export in module.exports() {
        let ty = export.ty();
        match export.name() {
            EXPORT_MEMORY => {
                let ExternType::Memory(memory) = ty else {
                    return Err(RejectReason::Exports("`memory` must be a memory".into()));
                };
                if memory.is_64() || memory.is_shared() {
                    return Err(RejectReason::Memory(
                        "must be a 32-bit, unshared memory".into(),
                    ));
                }
                let minimum_bytes = memory.minimum().saturating_mul(PAGE_BYTES);
                if minimum_bytes > memory_bytes_max {
                    return Err(RejectReason::Memory(format!(
                        "declares {minimum_bytes} bytes initially, over the {memory_bytes_max}-byte limit"
                    )));
                }
                has_memory = true;
            }
            EXPORT_INPUT => {
                expect_func(EXPORT_INPUT, &ty, &["i32"], &["i32"])
                    .map_err(RejectReason::Exports)?;
                has_input = true;
            }
            EXPORT_BID => {
                expect_func(EXPORT_BID, &ty, &["i32"], &["i64"]).map_err(RejectReason::Exports)?;
                has_bid = true;
            }
            EXPORT_INIT => {
                expect_func(EXPORT_INIT, &ty, &[], &["i32"]).map_err(RejectReason::Exports)?;
                has_init = true;
            }
            _ => {}
        }
    }
    for (present, name) in [
        (has_memory, EXPORT_MEMORY),
        (has_input, EXPORT_INPUT),
        (has_bid, EXPORT_BID),
    ] {
        if !present {
            return Err(RejectReason::Exports(format!(
                "missing required export `{name}`"
            )));
        }
    }
    Ok(Abi { has_init })
}
