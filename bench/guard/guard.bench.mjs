// Guard deterministic tier over 32 KB texts: the injection heuristics alone (detectInjection, all views and base64
// decoding included) and the whole default input check (checkInput: token estimate, injection, secret and PII
// redaction), as the gateway runs them in-process on every request. Prints one line per input and a summary line.
// Timings are per call, single-threaded; min is the uncontended figure on a busy machine, p50 the typical one.
//
//   npx tsc -p packages/guard-policy/tsconfig.build.json && node bench/guard/guard.bench.mjs [--kb 32] [--runs 400]
import { parseArgs } from "node:util";
import { checkInput, compileGuardSection, detectInjection } from "@tokenmesh/guard-policy";

const { values: args } = parseArgs({
  options: { kb: { type: "string", default: "32" }, runs: { type: "string", default: "400" } },
});
const size = Number(args.kb) * 1024;
const runs = Number(args.runs);

const fill = (unit) => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
const inputs = {
  "english prose": fill(
    "The quarterly report shows revenue grew 12% while costs stayed flat; please summarise the previous chapter, " +
      "ignore the typos, and list the rules of chess for my notes. Contact ops at ops@example.com if needed. ",
  ),
  "chinese prose": fill(
    "请帮我总结上面的文章，忽略拼写错误。季度报告显示收入增长了百分之十二，成本保持不变。订单号：20240115123456789。",
  ),
  "code and paths": fill(
    "const internationalizationConfiguration = loadConfiguration('/usr/local/lib/node_modules/package/dist/index.js');\n",
  ),
  "base64 (binary)": fill(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg",
  ),
  "base64 (text)": fill(`${Buffer.from("A harmless sentence about the weather, nothing more. ").toString("base64")}\n`),
  "spelled letters": fill("a b c d e f g h i j k l m n o p q r s t u v w x y z "),
  "trigger words": fill("ignore all all all the previous system developer mode you are now pretend act as "),
  "digit runs": fill("13812345678 6222021234567890128 11010519491231002X 4111111111111111 "),
  // Adversarial shapes: one 32 KB word, one 32 KB digit run, punctuation only, many short base64-like runs.
  "one long word": fill("abcdefghijklmnopqrstuvwxyz"),
  "one digit run": fill("1234567890"),
  punctuation: fill("<|#[]:/ "),
  "short b64 runs": fill("QUJDREVGR0hJSktMTU5PUFFS "),
  "many b64 texts": fill(`${Buffer.from("Hello world, how are you?").toString("base64")} `),
};

const policy = compileGuardSection({ max_input_tokens: 10_000_000 }).default;

function measure(f) {
  for (let i = 0; i < 30; i++) f();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    f();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { min: times[0], p50: times[Math.floor(runs / 2)] };
}

const ms = (x) => `${x.toFixed(3)} ms`;
let worst = { inj: 0, injMin: 0, all: 0, allMin: 0 };
for (const [name, text] of Object.entries(inputs)) {
  const inj = measure(() => detectInjection(policy.injection, text));
  const all = measure(() => checkInput(policy, [{ role: "user", texts: [text], images: 0 }]));
  worst = {
    inj: Math.max(worst.inj, inj.p50),
    injMin: Math.max(worst.injMin, inj.min),
    all: Math.max(worst.all, all.p50),
    allMin: Math.max(worst.allMin, all.min),
  };
  console.log(
    `${name.padEnd(16)} injection min ${ms(inj.min)} p50 ${ms(inj.p50)} | whole input check min ${ms(all.min)} p50 ${ms(all.p50)}`,
  );
}
console.log(
  `guard: ${args.kb} KB input, slowest input: injection min ${ms(worst.injMin)} p50 ${ms(worst.inj)}, whole default input check min ${ms(worst.allMin)} p50 ${ms(worst.all)} (node ${process.version}, ${runs} runs)`,
);
