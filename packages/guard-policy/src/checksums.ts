/**
 * Check-digit algorithms that turn "looks like a number" into "is a card / an IBAN", so the PII rules do not
 * redact every long number. Pure and allocation-light: they run inside the output stream's hot path.
 */

/** Whether the digits of `text` (separators ignored) pass the Luhn check. Needs at least two digits. */
export function luhnValid(text: string): boolean {
  let sum = 0;
  let count = 0;
  for (let i = text.length - 1; i >= 0; i--) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) continue;
    let d = c;
    if (count % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    count++;
  }
  return count >= 2 && sum % 10 === 0;
}

/**
 * Whether `text` (spaces ignored, case-insensitive) is an IBAN with a valid ISO 13616 mod-97 check:
 * two letters, two check digits, then 11–30 letters or digits.
 */
export function ibanValid(text: string): boolean {
  const s = text.replace(/ /g, "").toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(s)) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const code = rearranged.charCodeAt(i);
    // Letters count as two digits (A=10 … Z=35); fold them in one at a time to stay within a safe integer.
    if (code >= 65) rem = (rem * 100 + (code - 55)) % 97;
    else rem = (rem * 10 + (code - 48)) % 97;
  }
  return rem === 1;
}
