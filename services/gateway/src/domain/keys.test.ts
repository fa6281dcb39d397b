import { describe, expect, it } from "vitest";
import { bearerToken, hashSecret, modelAllowed, newKey, type Principal, sameHash } from "./keys.js";

const principal = (models: string[]): Principal => ({
  keyId: "k",
  name: "n",
  team: "",
  user: "",
  models,
  rpm: 0,
  tpm: 0,
  admin: false,
});

describe("virtual keys", () => {
  it("creates distinct secrets whose hash is what gets stored", () => {
    const a = newKey();
    const b = newKey();
    expect(a.secret).not.toBe(b.secret);
    expect(a.secret.startsWith("tm-")).toBe(true);
    expect(a.hash).toBe(hashSecret(a.secret));
    expect(a.hash).not.toContain(a.secret);
    expect(sameHash(a.hash, hashSecret(a.secret))).toBe(true);
    expect(sameHash(a.hash, b.hash)).toBe(false);
  });

  it("reads only well-formed bearer tokens", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("bearer abc")).toBe("abc");
    expect(bearerToken("Basic abc")).toBeUndefined();
    expect(bearerToken("Bearer")).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });

  it("allows a model by id or by the alias the client used", () => {
    expect(modelAllowed(principal([]), "anything", undefined)).toBe(true);
    expect(modelAllowed(principal(["local-tiny"]), "tiny", "local-tiny")).toBe(true);
    expect(modelAllowed(principal(["tiny"]), "tiny", "local-tiny")).toBe(true);
    expect(modelAllowed(principal(["local-tiny"]), "gpt", "gpt-fake")).toBe(false);
  });
});
