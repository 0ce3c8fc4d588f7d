//! Upload-time checks of a strategy module against ABI v1
//! (`strategies/sdk/ABI.md`): default deny.

use serde::{Deserialize, Serialize};
use wasmparser::{Operator, Parser, Payload};
use wasmtime::{ExternType, FuncType, Module, ValType};

use super::capability::{Capabilities, Capability};

/// Why a module (or its settings) was refused. Each message names the
/// reason so that a tenant can fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum RejectReason {
    #[error("module is {bytes} bytes, over the {bytes_max}-byte limit")]
    TooLarge { bytes: usize, bytes_max: usize },
    #[error("module does not compile: {0}")]
    Compile(String),
    /// A structural limit checked before compilation (see [`ModuleLimits`]).
    #[error("module over a structural limit: {0}")]
    Structure(String),
    /// The isolated compiler ran out of its time or memory budget.
    #[error("compilation over its budget: {0}")]
    CompileBudget(String),
    #[error("import not allowed: {0}")]
    Imports(String),
    /// The module imports a function of a capability the tenant was not
    /// granted.
    #[error(
        "import `gavel_v1::{}` needs the `{capability}` grant, which tenant {tenant} does not have; ask the operator to grant it",
        .capability.import()
    )]
    NotGranted {
        capability: Capability,
        tenant: String,
    },
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

/// Structural limits checked with `wasmparser` before a module reaches the
/// compiler. Compile time grows with some shapes faster than with module
/// size: measured here, it is quadratic in the `loop`s of one function
/// (1,000: 0.16 s; 4,000: 2.3 s; 20,000: over a minute, nested or not), so
/// loops are bounded per function and per module, which bounds the total
/// (at most `loops_max x loops_per_function_max` loop pairs: 3.6 s here).
/// Each limit sits well above what real strategies use (a 46 KB Rust
/// strategy has 85 loops and 600 blocks); `benches/RESULTS.md` has the
/// numbers. The isolated compiler's time and memory limits bound whatever
/// shape is left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModuleLimits {
    /// Functions defined in the module. Default 20,000: Rust strategies
    /// define 100-2,000.
    pub functions_max: u32,
    /// Bytes of one function body. Default 512 KiB: the largest body in the
    /// example strategies is a few KB.
    pub function_body_bytes_max: u32,
    /// Nesting of `block`, `loop`, `if` and `try_table` in one function.
    /// Default 512: compiled Rust rarely goes past 50; the compile bomb is
    /// thousands of levels.
    pub nesting_depth_max: u32,
    /// Locals of one function, parameters included. Default 10,000.
    pub locals_per_function_max: u32,
    /// Targets of one `br_table`. Default 10,000.
    pub br_table_targets_max: u32,
    /// `loop`s in one function. Default 1,000 (compiles in 0.16 s).
    pub loops_per_function_max: u32,
    /// `loop`s in the whole module. Default 20,000: a 4 MiB Rust module has
    /// about 7,500.
    pub loops_max: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            functions_max: 20_000,
            function_body_bytes_max: 512 << 10,
            nesting_depth_max: 512,
            locals_per_function_max: 10_000,
            br_table_targets_max: 10_000,
            loops_per_function_max: 1_000,
            loops_max: 20_000,
        }
    }
}

/// Checks `wasm` against `limits` in one linear pass, before compilation.
/// Malformed bytes are left to the compiler's own validation, which names
/// the problem better; only shapes over a limit are refused here.
pub fn check_structure(wasm: &[u8], limits: &ModuleLimits) -> Result<(), RejectReason> {
    let over = |what: String| Err(RejectReason::Structure(what));
    let mut functions: u32 = 0;
    let mut loops: u32 = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return Ok(()) };
        let Payload::CodeSectionEntry(body) = payload else {
            continue;
        };
        let index = functions;
        functions += 1;
        if functions > limits.functions_max {
            return over(format!(
                "more than {} functions (functions_max)",
                limits.functions_max
            ));
        }
        let bytes = body.range().len();
        if bytes > limits.function_body_bytes_max as usize {
            return over(format!(
                "function {index} body is {bytes} bytes, over function_body_bytes_max {}",
                limits.function_body_bytes_max
            ));
        }
        let Ok(locals) = body.get_locals_reader() else {
            return Ok(());
        };
        let mut local_count: u64 = 0;
        for local in locals {
            let Ok((count, _)) = local else { return Ok(()) };
            local_count += u64::from(count);
            if local_count > u64::from(limits.locals_per_function_max) {
                return over(format!(
                    "function {index} declares more than {} locals (locals_per_function_max)",
                    limits.locals_per_function_max
                ));
            }
        }
        let Ok(mut operators) = body.get_operators_reader() else {
            return Ok(());
        };
        let mut depth: u32 = 0;
        let mut function_loops: u32 = 0;
        while !operators.eof() {
            let Ok(operator) = operators.read() else {
                return Ok(());
            };
            if let Operator::Loop { .. } = operator {
                function_loops += 1;
                loops += 1;
                if function_loops > limits.loops_per_function_max {
                    return over(format!(
                        "function {index} has more than {} loops (loops_per_function_max)",
                        limits.loops_per_function_max
                    ));
                }
                if loops > limits.loops_max {
                    return over(format!(
                        "the module has more than {} loops (loops_max)",
                        limits.loops_max
                    ));
                }
            }
            match operator {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::TryTable { .. } => {
                    depth += 1;
                    if depth > limits.nesting_depth_max {
                        return over(format!(
                            "function {index} nests blocks more than {} deep (nesting_depth_max)",
                            limits.nesting_depth_max
                        ));
                    }
                }
                Operator::End => depth = depth.saturating_sub(1),
                Operator::BrTable { targets } if targets.len() > limits.br_table_targets_max => {
                    return over(format!(
                        "function {index} has a br_table of {} targets, over br_table_targets_max {}",
                        targets.len(),
                        limits.br_table_targets_max
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The capabilities the `gavel_v1` imports of `wasm` need, read without
/// compiling it (the demo seeding grants these to the examples it uploads).
/// An unreadable module needs none here; its upload says what is wrong.
pub fn imported_capabilities(wasm: &[u8]) -> Capabilities {
    let mut capabilities = Capabilities::default();
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::ImportSection(imports)) = payload else {
            continue;
        };
        for import in imports.into_imports().flatten() {
            if import.module == IMPORT_MODULE
                && let Some(capability) = Capability::of_import(import.name)
            {
                capabilities.insert(capability);
            }
        }
    }
    capabilities
}

/// What the checks learned about a valid module.
pub struct Abi {
    pub has_init: bool,
    /// The capabilities its imports need.
    pub capabilities: Capabilities,
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
    let mut capabilities = Capabilities::default();
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        if module_name != IMPORT_MODULE {
            return Err(RejectReason::Imports(format!(
                "`{module_name}::{name}`: only `{IMPORT_MODULE}` imports are allowed (no WASI)"
            )));
        }
        let ty = import.ty();
        let result = match name {
            "log" => expect_func(name, &ty, &["i32", "i32"], &[]),
            "request_time_us" => expect_func(name, &ty, &[], &["i64"]),
            "kv_get" => expect_func(name, &ty, &["i32"; 6], &["i32"]),
            "frequency" => expect_func(name, &ty, &["i32", "i32", "i32"], &["i32"]),
            "budget_remaining" => expect_func(name, &ty, &[], &["f64"]),
            _ => Err(format!("`{IMPORT_MODULE}::{name}` is not part of ABI v1")),
        };
        result.map_err(RejectReason::Imports)?;
        if let Some(capability) = Capability::of_import(name) {
            capabilities.insert(capability);
        }
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
    Ok(Abi {
        has_init,
        capabilities,
    })
}
