import { isAbsolute, resolve } from "node:path";
import type { Logger } from "@tokenmesh/telemetry";
import pg from "pg";
import type { SemanticEntry, SemanticStore } from "../domain/semantic-cache.js";

/**
 * The SQL both connections speak: one query with positional parameters, rows back. `pg.Pool` and PGlite share it,
 * so the semantic store runs the same statements on a PostgreSQL server and on the embedded PGlite.
 */
export interface SqlClient {
  query<Row>(text: string, params?: unknown[]): Promise<{ rows: Row[] }>;
  close(): Promise<void>;
}

const TABLE = "tokenmesh_semantic_cache";

// Created on start, idempotently (several replicas may run it at once: see init). The embedding column has no
// fixed dimension so any embedding model fits; each dimension count gets its own partial HNSW index on first use
// (ensureIndex). Expired and surplus rows are deleted by trim; lookups skip expired rows until then.
const SCHEMA = [
  "CREATE EXTENSION IF NOT EXISTS vector",
  `CREATE TABLE IF NOT EXISTS ${TABLE} (
    id          bigserial PRIMARY KEY,
    bucket      text        NOT NULL,
    model       text        NOT NULL,
    scope       text        NOT NULL,
    dims        integer     NOT NULL,
    embedding   vector      NOT NULL,
    answer      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
  )`,
  `CREATE INDEX IF NOT EXISTS ${TABLE}_bucket ON ${TABLE} (bucket)`,
  `CREATE INDEX IF NOT EXISTS ${TABLE}_expires ON ${TABLE} (expires_at)`,
];

/** HNSW indexes half-precision vectors up to this many dimensions; larger embeddings are searched exactly. */
const MAX_INDEXED_DIMS = 4000;

// Errors another replica creating the same object at the same moment may cause; init retries on them.
const CREATE_RACE_CODES = new Set(["23505", "42P07", "42710"]);

/**
 * The semantic cache's store in PostgreSQL with pgvector: one table, a partial HNSW index (cosine, on the
 * embedding cast to `halfvec(n)`) per embedding dimension count, a B-tree on the bucket and one on the expiry.
 * The nearest entry is ordered by the index's half-precision distance and its similarity computed at full
 * precision. Eviction keeps the rows of the last `maxEntries` inserts (ids are the insertion order) and deletes
 * the older ones.
 */
export class PostgresSemanticStore implements SemanticStore {
  private readonly indexed = new Map<number, Promise<void>>();

  constructor(
    private readonly sql: SqlClient,
    private readonly logger: Logger,
  ) {}

  async init(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        for (const statement of SCHEMA) await this.sql.query(statement);
        const existing = await this.sql.query<{ dims: number }>(`SELECT DISTINCT dims FROM ${TABLE}`);
        for (const { dims } of existing.rows) await this.ensureIndex(dims);
        return;
      } catch (err) {
        if (attempt >= 3 || !CREATE_RACE_CODES.has((err as { code?: string }).code ?? "")) throw err;
      }
    }
  }

  async nearest(
    bucket: string,
    embedding: readonly number[],
    now: number,
  ): Promise<{ similarity: number; model: string; answer: unknown } | undefined> {
    const dims = checkedDims(embedding);
    const order =
      dims <= MAX_INDEXED_DIMS
        ? `embedding::halfvec(${dims}) <=> $2::halfvec(${dims})`
        : `embedding::vector(${dims}) <=> $2::vector(${dims})`;
    const { rows } = await this.sql.query<{ similarity: number | string; model: string; answer: unknown }>(
      `SELECT model, answer, 1 - (embedding <=> $2::vector) AS similarity FROM ${TABLE}
       WHERE bucket = $1 AND dims = ${dims} AND expires_at > $3
       ORDER BY ${order} LIMIT 1`,
      [bucket, vectorLiteral(embedding), new Date(now)],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    const answer = typeof row.answer === "string" ? JSON.parse(row.answer) : row.answer;
    return { similarity: Number(row.similarity), model: row.model, answer };
  }

  async insert(entry: SemanticEntry): Promise<void> {
    const dims = checkedDims(entry.embedding);
    await this.ensureIndex(dims);
    await this.sql.query(
      `INSERT INTO ${TABLE} (bucket, model, scope, dims, embedding, answer, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5::vector, $6::jsonb, $7, $8)`,
      [
        entry.bucket,
        entry.model,
        entry.scope,
        dims,
        vectorLiteral(entry.embedding),
        JSON.stringify(entry.answer),
        new Date(entry.createdAt),
        new Date(entry.expiresAt),
      ],
    );
  }

  async trim(maxEntries: number, now: number): Promise<{ expired: number; evicted: number }> {
    const expired = await this.sql.query<{ n: number }>(
      `WITH gone AS (DELETE FROM ${TABLE} WHERE expires_at <= $1 RETURNING 1) SELECT count(*)::int AS n FROM gone`,
      [new Date(now)],
    );
    // Ids grow with every insert, so the rows of the last maxEntries inserts are the only ones that stay: at most
    // maxEntries rows (fewer when some of those expired or a write rolled back), found through the primary key
    // alone whatever the table's size, instead of counting it.
    const evicted = await this.sql.query<{ n: number }>(
      `WITH gone AS (
         DELETE FROM ${TABLE} WHERE id <= (SELECT max(id) FROM ${TABLE}) - $1::bigint RETURNING 1
       ) SELECT count(*)::int AS n FROM gone`,
      [maxEntries],
    );
    return { expired: Number(expired.rows[0]?.n ?? 0), evicted: Number(evicted.rows[0]?.n ?? 0) };
  }

  async count(): Promise<number> {
    const { rows } = await this.sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${TABLE}`);
    return Number(rows[0]?.n ?? 0);
  }

  close(): Promise<void> {
    return this.sql.close();
  }

  /** Creates the partial HNSW index for `dims` once per process (idempotent in the database too). */
  private ensureIndex(dims: number): Promise<void> {
    let done = this.indexed.get(dims);
    if (done === undefined) {
      done =
        dims > MAX_INDEXED_DIMS
          ? Promise.resolve(
              this.logger.warn({ dims }, "embeddings too large for an HNSW index; the semantic cache searches exactly"),
            )
          : this.sql
              .query(
                `CREATE INDEX IF NOT EXISTS ${TABLE}_hnsw_${dims} ON ${TABLE}
                 USING hnsw ((embedding::halfvec(${dims})) halfvec_cosine_ops) WHERE dims = ${dims}`,
              )
              .then(
                () => undefined,
                (err: { code?: string }) => {
                  // Another replica created it at the same moment: it exists.
                  if (CREATE_RACE_CODES.has(err.code ?? "")) return;
                  this.indexed.delete(dims);
                  throw err;
                },
              );
      this.indexed.set(dims, done);
    }
    return done;
  }
}

function checkedDims(embedding: readonly number[]): number {
  if (embedding.length === 0 || embedding.length > 16_000) {
    throw new Error(`cannot store an embedding of ${embedding.length} dimensions`);
  }
  return embedding.length;
}

function vectorLiteral(embedding: readonly number[]): string {
  for (const x of embedding) if (!Number.isFinite(x)) throw new Error("embedding has a non-finite value");
  return `[${embedding.join(",")}]`;
}

/** Where the semantic store lives, from `ROUTER_SEMANTIC_CACHE_URL` (see config.ts). */
export type SemanticStoreLocation = { kind: "postgres"; url: string } | { kind: "pglite"; dataDir: string | undefined };

/**
 * Reads `ROUTER_SEMANTIC_CACHE_URL`: `postgres://` or `postgresql://` → a PostgreSQL server; `memory://` (or
 * unset) → an embedded PGlite in memory; `file://<dir>` → an embedded PGlite persisted in `<dir>` (relative to the
 * working directory unless absolute: `file:///var/lib/x`, `file://.tokenmesh/semantic-cache`). Throws on
 * anything else.
 */
export function semanticStoreLocation(value: string | undefined): SemanticStoreLocation {
  if (value === undefined || value === "" || value === "memory://") return { kind: "pglite", dataDir: undefined };
  if (/^postgres(ql)?:\/\//.test(value)) return { kind: "postgres", url: value };
  if (value.startsWith("file://") && value.length > "file://".length) {
    const path = value.slice("file://".length);
    return { kind: "pglite", dataDir: isAbsolute(path) ? path : resolve(path) };
  }
  throw new Error("expected postgres://…, postgresql://…, memory:// or file://<directory>");
}

/** Options of {@link openSemanticStore}. */
export interface SemanticStoreOptions {
  /** Most connections to a PostgreSQL server. */
  poolSize: number;
  /** How long opening a connection to the server may take before the attempt fails. */
  connectTimeoutMs: number;
}

/**
 * Opens the store at `location` without touching the network or disk yet (PGlite loads, and the pool connects, on
 * first use). On a server, each connection enables pgvector's iterative index scans, so an HNSW scan filtered by
 * bucket keeps searching until it finds a row instead of returning none.
 */
export function openSemanticStore(
  location: SemanticStoreLocation,
  options: SemanticStoreOptions,
  logger: Logger,
): PostgresSemanticStore {
  return new PostgresSemanticStore(
    location.kind === "postgres" ? poolClient(location.url, options, logger) : pgliteClient(location.dataDir),
    logger,
  );
}

const ITERATIVE_SCAN = "SET hnsw.iterative_scan = relaxed_order";

function poolClient(url: string, options: SemanticStoreOptions, logger: Logger): SqlClient {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    // A statement the router has long stopped waiting for must not hold a connection.
    statement_timeout: 10_000,
    application_name: "tokenmesh-router",
  });
  // An idle connection that breaks emits here; without a listener it would crash the process.
  pool.on("error", (err) => logger.warn({ err: err.message }, "semantic cache connection lost"));
  pool.on("connect", (client) => {
    // pgvector before 0.8 has no iterative scans: filtered lookups may then miss more often, nothing worse.
    client.query(ITERATIVE_SCAN).catch(() => undefined);
  });
  return {
    query: async <Row>(text: string, params?: unknown[]) => {
      const result = await pool.query(text, params);
      return { rows: result.rows as Row[] };
    },
    close: () => pool.end(),
  };
}

function pgliteClient(dataDir: string | undefined): SqlClient {
  type Db = {
    query<Row>(text: string, params?: unknown[]): Promise<{ rows: Row[] }>;
    close(): Promise<void>;
  };
  let db: Promise<Db> | undefined;
  const open = (): Promise<Db> => {
    // Loaded on first use: the WebAssembly PostgreSQL costs ~1 s and memory that a router without the cache keeps.
    db ??= (async () => {
      const [{ PGlite }, { vector }] = await Promise.all([
        import("@electric-sql/pglite"),
        import("@electric-sql/pglite/vector"),
      ]);
      const instance = await PGlite.create({ ...(dataDir !== undefined ? { dataDir } : {}), extensions: { vector } });
      await instance.query("CREATE EXTENSION IF NOT EXISTS vector");
      await instance.query(ITERATIVE_SCAN);
      return instance as Db;
    })();
    db.catch(() => {
      db = undefined;
    });
    return db;
  };
  return {
    query: async <Row>(text: string, params?: unknown[]) => (await open()).query<Row>(text, params),
    close: async () => {
      if (db !== undefined) await (await db).close();
    },
  };
}
