import { describe, expect, it } from "vitest";
import { compileAuthSection, InvalidTokenError, type JwtAuth, looksLikeJwt, principalFromClaims } from "./jwt-auth.js";

const base = {
  issuer: "https://idp.example.com/",
  audience: "tokenmesh",
  jwks_url: "https://idp.example.com/jwks.json",
  claims: { team: "org", user: "email", models: "tm_models", tier: "tm_tier" },
  tiers: { free: { rpm: 10, tpm: 1000 }, pro: { rpm: 100, tpm: 0, models: ["tiny", "gpt-4o-mini"] } },
  default_tier: "free",
};

function config(over: Record<string, unknown> = {}): JwtAuth {
  return compileAuthSection({ jwt: { ...base, ...over } })!;
}

describe("compileAuthSection", () => {
  it("returns undefined without an auth section or without jwt", () => {
    expect(compileAuthSection(undefined)).toBeUndefined();
    expect(compileAuthSection({})).toBeUndefined();
  });

  it("fills defaults: 30 s skew, user from sub, 10 s refetch interval", () => {
    const c = compileAuthSection({
      jwt: { issuer: "i", audience: "a", public_keys: [{ jwk: { kty: "EC" } }], claims: { team: "t" } },
    })!;
    expect(c.clock_skew_s).toBe(30);
    expect(c.claims.user).toBe("sub");
    expect(c.jwks_refetch_interval_s).toBe(10);
  });

  it.each([
    ["no key source", { jwks_url: undefined }, /jwks_url or public_keys/],
    ["a skew over five minutes", { clock_skew_s: 301 }, /clock_skew_s/],
    ["an HMAC algorithm", { algorithms: ["HS256"] }, /algorithms/],
    ["alg none", { algorithms: ["none"] }, /algorithms/],
    [
      "a private PEM",
      { public_keys: [{ pem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----" }] },
      /private/,
    ],
    ["a symmetric JWK", { public_keys: [{ jwk: { kty: "oct", k: "c2VjcmV0" } }] }, /asymmetric/],
    ["a private JWK", { public_keys: [{ jwk: { kty: "EC", d: "x" } }] }, /asymmetric/],
    ["an unknown default tier", { default_tier: "gold" }, /default_tier/],
    ["an unknown option", { audiance: "x" }, /audiance|Unrecognized/],
  ])("rejects %s", (_what, over, message) => {
    expect(() => compileAuthSection({ jwt: { ...base, ...over } })).toThrow(message);
  });
});

describe("principalFromClaims", () => {
  const claims = { sub: "u-1", org: "research", email: "ada@example.com" };

  it("takes team and user from the configured claims and keys limits by issuer and subject", () => {
    const p = principalFromClaims(config(), claims);
    expect(p).toEqual({
      keyId: "jwt:https://idp.example.com/#u-1",
      name: "ada@example.com",
      team: "research",
      user: "ada@example.com",
      models: [],
      rpm: 10,
      tpm: 1000,
      admin: false,
    });
  });

  it("reads dotted claim paths", () => {
    const c = config({ claims: { team: "tm.team", user: "sub" } });
    expect(principalFromClaims(c, { sub: "s", tm: { team: "ops" } }).team).toBe("ops");
  });

  it("applies the claimed tier and intersects its models with the models claim", () => {
    const p = principalFromClaims(config(), { ...claims, tm_tier: "pro", tm_models: "tiny local-embed" });
    expect(p.rpm).toBe(100);
    expect(p.models).toEqual(["tiny"]);
  });

  it("uses the tier's models when the token names none", () => {
    expect(principalFromClaims(config(), { ...claims, tm_tier: "pro" }).models).toEqual(["tiny", "gpt-4o-mini"]);
  });

  it.each([
    ["no team claim", { sub: "u", email: "e" }, /org/],
    ["no sub", { org: "t", email: "e" }, /sub/],
    ["an unknown tier", { ...claims, tm_tier: "gold" }, /unknown tier/],
    [
      "a models claim granting nothing the tier allows",
      { ...claims, tm_tier: "pro", tm_models: ["other"] },
      /no model/,
    ],
    ["an empty models claim", { ...claims, tm_models: [] }, /no model/],
    ["a models claim of numbers", { ...claims, tm_models: [1, 2] }, /list of model names/],
  ])("refuses a token with %s", (_what, c, message) => {
    const run = () => principalFromClaims(config(), c as Record<string, unknown>);
    expect(run).toThrow(InvalidTokenError);
    expect(run).toThrow(message);
  });

  it("without a tier claim or default tier, applies no rate limits", () => {
    const p = principalFromClaims(config({ default_tier: undefined }), claims);
    expect([p.rpm, p.tpm]).toEqual([0, 0]);
  });
});

describe("looksLikeJwt", () => {
  it("tells a compact JWS from a virtual key", () => {
    expect(looksLikeJwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")).toBe(true);
    expect(looksLikeJwt("tm-abcDEF_123-xyz")).toBe(false);
    expect(looksLikeJwt("a.b")).toBe(false);
  });
});
