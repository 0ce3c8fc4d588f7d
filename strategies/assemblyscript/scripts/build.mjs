#!/usr/bin/env node
// Compiles every strategy in `assembly/examples/` to a core WebAssembly
// module the Gavel host accepts: `<out>/<name>.wasm` (default `build/`),
// and the test-only ones in `assembly/hostile/` to `<out>/hostile-<name>.wasm`.
//
//   node scripts/build.mjs [out]
//
// The flags: -O3; the minimal runtime, whose collector the SDK runs after
// each call, when nothing is on the stack (a persistent instance frees what
// it no longer uses, without the incremental collector's cost per
// allocation); no JS glue; `abort` removed (`--use abort=`), so a
// failed assertion traps instead of importing `env.abort`, which the host
// refuses. Every module is checked to import from `gavel_v1` only.

import { readdirSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(process.argv[2] ?? join(root, "build"));
mkdirSync(out, { recursive: true });

const sources = [];
for (const [folder, prefix] of [["examples", ""], ["hostile", "hostile-"]]) {
  for (const file of readdirSync(join(root, "assembly", folder)).sort()) {
    if (file.endsWith(".ts")) sources.push([join(folder, file), `${prefix}${file.slice(0, -3)}`]);
  }
}
for (const [file, name] of sources) {
  const wasm = join(out, `${name}.wasm`);
  const { error, stderr } = await asc.main([
    join(root, "assembly", file),
    "--outFile", wasm,
    "-O3", "--noAssert",
    "--runtime", "minimal",
    "--use", "abort=",
  ]);
  if (error) {
    console.error(stderr.toString());
    console.error(`${file}: ${error.message}`);
    process.exit(1);
  }
  const module = new WebAssembly.Module(readFileSync(wasm));
  const foreign = WebAssembly.Module.imports(module).filter((i) => i.module !== "gavel_v1");
  if (foreign.length) {
    console.error(`${file}: imports outside gavel_v1: ${foreign.map((i) => `${i.module}.${i.name}`).join(", ")}`);
    process.exit(1);
  }
  console.log(`built ${wasm}`);
}
