import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  callbackUrlProblem,
  isBlockedAddress,
  parseAllowList,
  signCallback,
  verifyCallbackSignature,
} from "./job-callback.js";

describe("callback signature", () => {
  const secret = "whsec_test";
  const body = '{"id":"job_1","status":"succeeded"}';

  it("is t=<unix>,v1=<HMAC-SHA256 hex of '<t>.<body>'>", () => {
    const expected = createHmac("sha256", secret).update(`1700000000.${body}`).digest("hex");
    expect(signCallback(secret, body, 1_700_000_000)).toBe(`t=1700000000,v1=${expected}`);
  });

  it("verifies a fresh signature and refuses a changed body, another secret or a stale timestamp", () => {
    const h = signCallback(secret, body, 1_000);
    expect(verifyCallbackSignature(secret, h, body, 1_010)).toBe(true);
    expect(verifyCallbackSignature(secret, h, `${body} `, 1_010)).toBe(false);
    expect(verifyCallbackSignature("other", h, body, 1_010)).toBe(false);
    expect(verifyCallbackSignature(secret, h, body, 1_000 + 301)).toBe(false);
    expect(verifyCallbackSignature(secret, undefined, body, 1_000)).toBe(false);
    expect(verifyCallbackSignature(secret, "t=1000,v1=zz", body, 1_000)).toBe(false);
  });
});

describe("callback URLs", () => {
  const all = parseAllowList("*");

  it("accepts http and https hosts on the allow-list", () => {
    expect(callbackUrlProblem("https://hooks.example.com/x", all)).toBeUndefined();
    expect(callbackUrlProblem("http://127.0.0.1:9000/cb", all)).toBeUndefined();
    const list = parseAllowList(" *.example.com , 10.0.0.5 ");
    expect(callbackUrlProblem("https://a.example.com/cb", list)).toBeUndefined();
    expect(callbackUrlProblem("https://example.com/cb", list)).toMatch(/allow-list/);
    expect(callbackUrlProblem("https://evil-example.com/cb", list)).toMatch(/allow-list/);
    expect(callbackUrlProblem("http://10.0.0.5/cb", list)).toBeUndefined();
  });

  it("refuses other schemes, credentials and metadata or link-local targets even when all hosts are allowed", () => {
    expect(callbackUrlProblem("ftp://example.com/x", all)).toMatch(/http/);
    expect(callbackUrlProblem("file:///etc/passwd", all)).toMatch(/http/);
    expect(callbackUrlProblem("not a url", all)).toMatch(/valid/);
    expect(callbackUrlProblem("https://u:p@example.com/", all)).toMatch(/credentials/);
    expect(callbackUrlProblem("http://169.254.169.254/latest/meta-data", all)).toMatch(/metadata/);
    expect(callbackUrlProblem("http://metadata.google.internal/", all)).toMatch(/metadata/);
    expect(callbackUrlProblem("http://[fe80::1]/", all)).toMatch(/metadata/);
  });

  it("classifies blocked addresses, IPv4-mapped ones included", () => {
    expect(isBlockedAddress("169.254.169.254")).toBe(true);
    expect(isBlockedAddress("::ffff:169.254.1.1")).toBe(true);
    expect(isBlockedAddress("fd00:ec2::254")).toBe(true);
    expect(isBlockedAddress("100.100.100.200")).toBe(true);
    expect(isBlockedAddress("127.0.0.1")).toBe(false);
    expect(isBlockedAddress("10.1.2.3")).toBe(false);
    expect(isBlockedAddress("2001:db8::1")).toBe(false);
  });
});
