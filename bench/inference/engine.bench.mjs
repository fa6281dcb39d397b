// Kept for existing commands: the raw-engine half of inference.bench.mjs (no service), on the tiny test model unless
// --size/--model say otherwise. Same flags as inference.bench.mjs; see README.md.
//
//   npm run build -w @tokenmesh/inference && node bench/inference/engine.bench.mjs [--model path.gguf] [--slots 4]
const argv = process.argv.slice(2);
if (!argv.some((a) => a.startsWith("--cases"))) process.argv.push("--cases", "raw");
if (!argv.some((a) => a.startsWith("--size") || a.startsWith("--model"))) process.argv.push("--size", "tiny");
await import("./inference.bench.mjs");
