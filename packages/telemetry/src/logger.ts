import { context, trace } from "@opentelemetry/api";
import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger };

export interface CreateLoggerOptions {
  service: string;
  level?: string;
  /** Where to write (default stdout); tests pass a stream to capture lines. */
  destination?: NodeJS.WritableStream;
}

/**
 * A pino JSON logger that stamps every line with `service`, and `trace_id`/`span_id` of the active span.
 * Pass it (or children with `request_id`) into code; never import a global logger. Prompt and completion text
 * must not be logged.
 */
export function createLogger(options: CreateLoggerOptions): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? "info",
    base: { service: options.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin() {
      const sc = trace.getSpanContext(context.active());
      return sc ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
    },
  };
  return options.destination ? pino(opts, options.destination as pino.DestinationStream) : pino(opts);
}
