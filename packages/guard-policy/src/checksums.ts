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

/** ISO 7064 MOD 11-2 weights of the first 17 digits of a resident identity card number (2^(17-i) mod 11). */
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/** First two digits of the administrative division codes (provinces, municipalities, HK/Macau/Taiwan residents). */
const ID_PROVINCES = new Set([
  11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63,
  64, 65, 71, 81, 82, 83,
]);

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * Whether `text` (spaces ignored) is a mainland China resident identity card number (GB 11643): 17 digits and a
 * check character (0–9 or X, either case) that satisfies ISO 7064 MOD 11-2, a known province code, and a birth date
 * (digits 7–14) that exists on the calendar between 1900 and 2099.
 */
export function cnResidentIdValid(text: string): boolean {
  const s = text.replace(/ /g, "");
  if (!/^\d{17}[\dXx]$/.test(s)) return false;
  if (!ID_PROVINCES.has(Number(s.slice(0, 2)))) return false;
  const year = Number(s.slice(6, 10));
  const month = Number(s.slice(10, 12));
  const day = Number(s.slice(12, 14));
  if (year < 1900 || year > 2099 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (s.charCodeAt(i) - 48) * ID_WEIGHTS[i]!;
  const check = (12 - (sum % 11)) % 11;
  const last = s[17]!;
  return check === 10 ? last === "X" || last === "x" : last === String(check);
}
