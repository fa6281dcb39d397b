// What a function made once per request costs the young-generation GC, by kind of function. Each "request" makes
// ~2.5 KB of objects that one closure captures and that are dead when it returns; the request then makes and calls
// one function of the kind measured, capturing them. Each kind runs in a child process of its own under
// `--trace-gc-nvp`. Prints ONE line:
//
//   gc-closures arrow_promoted_kb=… async_fn_promoted_kb=… generator_promoted_kb=… async_generator_promoted_kb=…
//     class_promoted_kb=… hoisted_generator_promoted_kb=… requests_per_scavenge=…
//
// (means over the scavenges after a 2 s warm-up). Arrow functions and async functions leave nothing; a generator
// function, an async generator function or a class made per request keeps every request made since the last full
// GC alive through each scavenge: V8 gives each such function its own initial map, in the old generation, pointing
// back at the function and so at what it captured, and a dead old object is found dead only by a full GC. A
// generator defined once (hoisted) leaves nothing. The router did this once per request until stop 20
// (bench/gateway/README.md); scripts/check-closures.mjs (npm run lint) keeps it out of service code.
//
// Run: node bench/gc/closures.bench.mjs [--seconds 5] [--semi-space 16]

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gcEvents, median } from "./trace.mjs";

const { values: args } = parseArgs({
  options: {
    kind: { type: "string" },
    seconds: { type: "string", default: "5" },
    "semi-space": { type: "string", default: "16" },
  },
});
const KINDS = ["arrow", "async_fn", "generator", "async_generator", "class", "hoisted_generator"];

async function* hoisted(keep) {
  yield keep;
}

function request(kind, n) {
  const payload = new Array(300).fill(n);
  const keep = () => payload;
  switch (kind) {
    case "arrow":
      return ((k) => k)(keep);
    case "async_fn":
      return (async () => keep)();
    case "generator":
      return (function* () {
        yield keep;
      })().next();
    case "async_generator":
      return (async function* () {
        yield keep;
      })().next();
    case "class":
      return new (class {
        k = keep;
      })();
    case "hoisted_generator":
      return hoisted(keep).next();
  }
}

if (args.kind !== undefined) {
  // Child: ~20,000 requests a second for `seconds`, in 1 ms ticks (other work in between, as a server's would be).
  const end = Date.now() + Number(args.seconds) * 1000;
  let n = 0;
  const tick = () => {
    for (let i = 0; i < 20; i++) request(args.kind, n++);
    if (Date.now() < end) setTimeout(tick, 1);
    else console.log(`requests=${n}`);
  };
  tick();
} else {
  const self = fileURLToPath(import.meta.url);
  const out = [];
  const perScavenge = [];
  for (const kind of KINDS) {
    const r = spawnSync(
      process.execPath,
      [
        `--max-semi-space-size=${args["semi-space"]}`,
        "--trace-gc-nvp",
        self,
        "--kind",
        kind,
        "--seconds",
        args.seconds,
      ],
      { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
    );
    const requests = Number(/^requests=(\d+)/m.exec(r.stdout)?.[1] ?? 0);
    const scavenges = gcEvents(r.stdout).filter((g) => g.young);
    const afterWarmUp = scavenges.filter((g) => g.atMs > 2000);
    // The mean, not the median: what survives one scavenge is copied, and promoted at the next, so a kind that keeps
    // everything alternates between promoting little and promoting much.
    const promoted = afterWarmUp.reduce((t, g) => t + g.promoted, 0) / Math.max(1, afterWarmUp.length);
    out.push(`${kind}_promoted_kb=${(promoted / 1024).toFixed(0)}`);
    if (scavenges.length > 0) perScavenge.push(requests / scavenges.length);
  }
  console.log(
    `gc-closures ${out.join(" ")} requests_per_scavenge=${Math.round(median(perScavenge))} semi_space_mb=${args["semi-space"]}`,
  );
}
