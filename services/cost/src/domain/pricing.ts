/**
 * Money is counted in integer nano-USD (1e-9 USD) everywhere it is stored or added, so totals are exact sums
 * of per-event costs: a token count times a price per million tokens is rounded once, per event, to the nano-USD.
 */

/** Prices of one model in USD per million tokens. */
export interface Price {
  inputPerMtok: number;
  outputPerMtok: number;
  /** Price of input tokens served from the provider's prompt cache; the input price when unset. */
  cachedInputPerMtok?: number | undefined;
}

/** A model whose price is not known costs nothing (and is reported by a warning metric). */
export const FREE: Price = { inputPerMtok: 0, outputPerMtok: 0 };

const NANO_PER_USD = 1_000_000_000;

/** USD → integer nano-USD, rounded to the nearest nano-USD. */
export function usdToNano(usd: number): number {
  return Math.round(usd * NANO_PER_USD);
}

/** Integer nano-USD → USD. */
export function nanoToUsd(nano: number): number {
  return nano / NANO_PER_USD;
}

/** Token counts of one request. `input` includes `cached` (the OpenAI convention: cached ⊆ prompt tokens). */
export interface TokenCounts {
  input: number;
  output: number;
  cached: number;
}

/**
 * The cost of a request in nano-USD: uncached input tokens at the input price, cached input tokens at the cached
 * price (the input price when the model has none), output tokens at the output price, rounded once. Negative or
 * inconsistent counts are clamped (cached never exceeds input), so a malformed event cannot produce a refund.
 */
export function costNano(price: Price, tokens: TokenCounts): number {
  const input = Math.max(0, tokens.input);
  const cached = Math.min(Math.max(0, tokens.cached), input);
  const output = Math.max(0, tokens.output);
  const cachedPrice = price.cachedInputPerMtok ?? price.inputPerMtok;
  // tokens × USD/Mtok = µUSD; × 1000 = nano-USD.
  return Math.round(
    ((input - cached) * price.inputPerMtok + cached * cachedPrice + output * price.outputPerMtok) * 1000,
  );
}

/**
 * The most a request can cost, in nano-USD: all its input tokens at the (uncached) input price plus its maximum
 * output tokens at the output price. This is what a reservation holds against a hard budget.
 */
export function worstCaseNano(price: Price, inputTokens: number, maxOutputTokens: number): number {
  return costNano(price, { input: inputTokens, output: maxOutputTokens, cached: 0 });
}
