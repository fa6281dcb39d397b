import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** A span as the OTLP/HTTP JSON exporter sends it, with its service's name. */
export interface ReceivedSpan {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}

function value(v: OtlpValue | undefined): unknown {
  if (!v) return undefined;
  return v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.doubleValue ?? v.boolValue));
}

/**
 * A minimal OTLP/HTTP receiver (JSON encoding, `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) that keeps every span it
 * is sent, so a test can check that one trace crosses every service.
 */
export async function startOtlpReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; close(): Promise<void> }> {
  const spans: ReceivedSpan[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      if (req.url?.startsWith("/v1/traces")) {
        try {
          const parsed = JSON.parse(body) as {
            resourceSpans?: {
              resource?: { attributes?: { key: string; value: OtlpValue }[] };
              scopeSpans?: {
                spans?: {
                  name: string;
                  traceId: string;
                  spanId: string;
                  parentSpanId?: string;
                  kind?: number;
                  attributes?: { key: string; value: OtlpValue }[];
                }[];
              }[];
            }[];
          };
          for (const rs of parsed.resourceSpans ?? []) {
            const service = String(value(rs.resource?.attributes?.find((a) => a.key === "service.name")?.value) ?? "");
            for (const ss of rs.scopeSpans ?? []) {
              for (const s of ss.spans ?? []) {
                spans.push({
                  service,
                  name: s.name,
                  traceId: s.traceId,
                  spanId: s.spanId,
                  parentSpanId: s.parentSpanId ?? "",
                  kind: s.kind ?? 0,
                  attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, value(a.value)])),
                });
              }
            }
          }
        } catch {
          // not JSON: ignore
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
