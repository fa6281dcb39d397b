/**
 * Fake secrets and PII for tests, built at run time so no scanner mistakes the test sources for leaked keys.
 * None of them is a real credential.
 */
const B62 = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz";

function body(n: number, alphabet = B62): string {
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[(i * 7 + 3) % alphabet.length];
  return s;
}

export const SECRETS: Record<string, string> = {
  "secret.openai": `sk-proj-${body(48)}_${body(20)}`,
  "secret.anthropic": `sk-ant-api03-${body(80)}-${body(10)}AA`,
  "secret.aws_access_key": `AKIA${body(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}`,
  "secret.github": `ghp_${body(36)}`,
  "secret.slack": `xoxb-${body(11, "0123456789")}-${body(12, "0123456789")}-${body(24)}`,
  "secret.google_api_key": `AIza${body(35)}`,
  "secret.jwt": `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.${body(43)}`,
  "secret.private_key": `-----BEGIN RSA PRIVATE KEY-----\n${body(64)}\n${body(64)}\n${body(20)}==\n-----END RSA PRIVATE KEY-----`,
};

export const PII: Record<string, string> = {
  "pii.email": "jane.doe+billing@mail.example.co.uk",
  "pii.phone": "+44 20 7946 0958",
  "pii.credit_card": "4111 1111 1111 1111",
  "pii.us_ssn": "123-45-6789",
  "pii.iban": "DE89 3704 0044 0532 0130 00",
  "pii.cn_mobile": "+86 138-1234-5678",
  "pii.cn_resident_id": "44030419900307123X",
  "pii.cn_bank_card": "6222 0212 3456 7890 128",
  "pii.cn_passport": "EA1234567",
};
