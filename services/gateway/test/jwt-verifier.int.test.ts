import { createServer, type Server } from "node:http";
import { createLogger } from "@tokenmesh/telemetry";
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JoseJwtVerifier } from "../src/adapters/jwt-verifier.js";
import { compileAuthSection, type JwtAuth } from "../src/domain/jwt-auth.js";

const logger = createLogger({ service: "jwt-verifier-test", level: "silent" });
const idp = { keys: [] as object[], fetches: 0, down: false };
let server: Server;
let url: string;
let k1: { privateKey: CryptoKey; publicKey: CryptoKey };

/** A clock the test moves by hand (ms since the epoch). */
const clock = { ms: Date.now() };

function token(kid = "k1", key: CryptoKey = k1.privateKey): Promise<string> {
  const iat = Math.floor(clock.ms / 1000);
  return new SignJWT({ org: "research" })
    .setProtectedHeader({ alg: "ES256", kid })
    .setIssuer("https://idp.test/")
    .setAudience("tokenmesh")
    .setSubject("u")
    .setIssuedAt(iat)
    .setExpirationTime(iat + 365 * 86_400)
    .sign(key);
}

function verifier(over: Record<string, unknown>): JoseJwtVerifier {
  const config = compileAuthSection({
    jwt: {
      issuer: "https://idp.test/",
      audience: "tokenmesh",
      claims: { team: "org" },
      jwks_refetch_interval_s: 10,
      jwks_max_age_s: 60,
      jwks_max_stale_s: 3600,
      ...over,
    },
  }) as JwtAuth;
  return new JoseJwtVerifier({ config: () => config, logger, now: () => clock.ms });
}

beforeAll(async () => {
  k1 = await generateKeyPair("ES256", { extractable: true });
  idp.keys = [{ ...(await exportJWK(k1.publicKey)), kid: "k1", alg: "ES256" }];
  server = createServer((_req, res) => {
    idp.fetches++;
    if (idp.down) res.writeHead(500).end();
    else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: idp.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/jwks`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
});

describe("JoseJwtVerifier with a JWKS", () => {
  it("serves cached keys through an IdP outage until the stale limit, then recovers", async () => {
    idp.down = false;
    const v = verifier({ jwks_url: url });
    const start = idp.fetches;
    await expect(v.verify(await token())).resolves.toMatchObject({ claims: { sub: "u", org: "research" } });
    expect(idp.fetches).toBe(start + 1);

    idp.down = true;
    clock.ms += 120_000; // past max age: a background refresh is attempted and fails
    await expect(v.verify(await token())).resolves.toBeDefined();
    await expect.poll(() => idp.fetches).toBe(start + 2);
    // Within the refetch interval a failing IdP is not asked again.
    await expect(v.verify(await token())).resolves.toBeDefined();
    expect(idp.fetches).toBe(start + 2);

    clock.ms += 3_600_000; // past the stale limit
    await expect(v.verify(await token())).rejects.toMatchObject({ code: "UNAVAILABLE" });

    idp.down = false;
    clock.ms += 11_000;
    await expect.poll(async () => (await v.verify(await token()).catch(() => undefined)) !== undefined).toBe(true);
  });

  it("answers UNAVAILABLE when nothing is cached and the IdP is down, without hammering it", async () => {
    idp.down = true;
    try {
      const v = verifier({ jwks_url: url });
      const start = idp.fetches;
      const results = await Promise.all(
        Array.from({ length: 10 }, async () => v.verify(await token()).catch((e: { code: string }) => e.code)),
      );
      expect(new Set(results)).toEqual(new Set(["UNAVAILABLE"]));
      expect(idp.fetches).toBe(start + 1);
    } finally {
      idp.down = false;
    }
  });
});

describe("JoseJwtVerifier with static public keys", () => {
  it("verifies against a PEM and refuses other keys without any fetch", async () => {
    const pem = await exportSPKI(k1.publicKey);
    const v = verifier({ public_keys: [{ kid: "k1", pem }] });
    const start = idp.fetches;
    await expect(v.verify(await token())).resolves.toMatchObject({ claims: { sub: "u" } });
    const other = await generateKeyPair("ES256");
    await expect(v.verify(await token("k1", other.privateKey))).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(v.verify(await token("k9"))).rejects.toThrow(/kid/);
    expect(idp.fetches).toBe(start);
  });

  it("refuses a private key in the catalog", () => {
    const pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
    expect(() => verifier({ public_keys: [{ pem }] })).toThrow(/private/);
  });
});
