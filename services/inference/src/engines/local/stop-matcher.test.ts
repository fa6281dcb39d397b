import { describe, expect, it } from "vitest";
import { StopMatcher } from "./stop-matcher.js";

describe("StopMatcher", () => {
  it("passes text through when there are no stop strings", () => {
    const m = new StopMatcher([]);
    expect(m.push("abc")).toEqual({ emit: "abc", stopped: false });
  });

  it("holds back a possible stop prefix and releases it when it does not complete", () => {
    const m = new StopMatcher(["END"]);
    expect(m.push("hello E")).toEqual({ emit: "hello ", stopped: false });
    expect(m.push("N")).toEqual({ emit: "", stopped: false });
    expect(m.push("x")).toEqual({ emit: "ENx", stopped: false });
  });

  it("stops at a stop string split across pushes and drops what follows", () => {
    const m = new StopMatcher(["END"]);
    expect(m.push("ab E")).toEqual({ emit: "ab ", stopped: false });
    expect(m.push("ND tail")).toEqual({ emit: "", stopped: true });
  });

  it("stops at the earliest of several stop strings", () => {
    const m = new StopMatcher(["zz", "b"]);
    expect(m.push("a b zz")).toEqual({ emit: "a ", stopped: true });
  });

  it("flushes held text at the end of generation", () => {
    const m = new StopMatcher(["\n\n"]);
    expect(m.push("line\n")).toEqual({ emit: "line", stopped: false });
    expect(m.flush()).toBe("\n");
  });
});
