import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without type declarations
import { findPerCallClosures } from "./check-closures.mjs";

const lines = (src: string) =>
  (findPerCallClosures(src, "x.ts") as { line: number; what: string }[]).map((f) => f.line);

describe("check-closures", () => {
  it("finds a generator function or class made inside a function body", () => {
    const src = [
      "export function handle(req) {", // 1
      "  const chunks = (async function* () { yield req; })();", // 2
      "  const it = { async *[Symbol.asyncIterator]() { yield req; } };", // 3
      "  function* each() { yield req; }", // 4
      "  const C = class { get() { return req; } };", // 5
      "  class D {}", // 6
      "  return [chunks, it, each, C, D];",
      "}",
      "const later = () => { const g = function* () {}; return g; };", // 9
    ].join("\n");
    expect(lines(src)).toEqual([2, 3, 4, 5, 6, 9]);
  });

  it("lets module-level generators and classes, their methods, and arrows and async functions inside bodies be", () => {
    const src = [
      "export async function* stream(x) { yield x; }",
      "export class Engine {",
      "  async *generate(call) { const f = async () => call; yield await f(); }",
      "  private *ids() { yield 1; }",
      "}",
      "export function handle(req) { const a = async () => req; const b = () => req; return [a, b]; }",
    ].join("\n");
    expect(lines(src)).toEqual([]);
  });

  it("accepts one marked made-once, and only that one", () => {
    const src = [
      "export function handlers(deps) {",
      "  return {",
      "    // made-once: handlers runs at startup",
      "    async *watch(req) { yield deps; },",
      "    async *other(req) { yield deps; },", // 5
      "  };",
      "}",
    ].join("\n");
    expect(lines(src)).toEqual([5]);
  });
});
