import { describe, expect, it } from "vitest";
import { compilePolicy, PolicySchema } from "./policy.js";
import { placeholder, redactText } from "./redactor.js";
import { inferMaxLength } from "./rules.js";
import { PII, SECRETS } from "./samples.test-helpers.js";

const rules = compilePolicy("", PolicySchema.parse({})).inputRules;
const redact = (text: string) => redactText(rules, text);

describe("secret and PII rules", () => {
  for (const [id, value] of Object.entries({ ...SECRETS, ...PII })) {
    it(`redacts ${id} in running text`, () => {
      const r = redact(`before ${value} after.`);
      expect(r.text).toBe(`before ${placeholder(id)} after.`);
      expect(r.hits).toEqual([id]);
    });
    it(`redacts ${id} at the very start and end of a text`, () => {
      expect(redact(value).text).toBe(placeholder(id));
    });
  }

  it("redacts a whole private key block, body and footer included, and keeps what follows", () => {
    const r = redact(`key:\n${SECRETS["secret.private_key"]}\nthanks`);
    expect(r.text).toBe(`key:\n${placeholder("secret.private_key")}\nthanks`);
  });

  it("redacts a private key whose footer never comes to the end of the text", () => {
    const r = redact("x -----BEGIN OPENSSH PRIVATE KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ");
    expect(r.text).toBe(`x ${placeholder("secret.private_key")}`);
  });

  it("keeps a sentence's final period after an email address", () => {
    expect(redact("Write to bob@example.com.").text).toBe(`Write to ${placeholder("pii.email")}.`);
  });

  it("redacts a secret longer than its head entirely", () => {
    const long = `sk-${"A1b2C3d4".repeat(40)}`;
    expect(redact(`k=${long};`).text).toBe(`k=${placeholder("secret.openai")};`);
  });

  it("accepts North American phone formats", () => {
    for (const p of ["(415) 555-0132", "415-555-0132", "415.555.0132", "+1 415 555 0132"]) {
      expect(redact(`call ${p} now`).hits, p).toEqual(["pii.phone"]);
    }
  });

  it("trims a card number followed by more digit groups back to the valid card", () => {
    expect(redact("card 4111 1111 1111 1111 2024").text).toBe(`card ${placeholder("pii.credit_card")} 2024`);
  });

  it("leaves look-alikes alone", () => {
    const benign = [
      "the risk-management-framework-for-teams is good",
      "use sk-learn-the-basics-of-python-today",
      "order 4111 1111 1111 1112 shipped", // fails Luhn
      "0000 0000 0000 0000",
      "on 2024-01-15 at 10:30",
      "build 1234567890 passed",
      "at 1796024091334 ms", // a Luhn-valid millisecond timestamp: 13 digits not starting with 4
      "ref 7992739871300", // Luhn-valid, but no card starts with 7
      "version 1.2.3.4 and ip 10.0.0.1",
      "AKIAshort and AKIA1234",
      "an eyJ in the text. eyJhbGciOi.notajwt",
      "-----BEGIN PUBLIC KEY-----",
      "DE89 3704 0044 0532 0130 02", // wrong IBAN check digits (and not Luhn-valid)
      "user@localhost",
    ];
    for (const t of benign) expect(redact(t), t).toEqual({ text: t, hits: [] });
  });

  it("finds mainland mobile numbers in their usual spellings", () => {
    for (const p of [
      "13812345678",
      "138 1234 5678",
      "138-1234-5678",
      "+86 13812345678",
      "+86-138-1234-5678",
      "0086 139 1234 5678",
      "(+86) 15012345678",
      "8619912345678",
    ]) {
      expect(redact(`联系我 ${p}，谢谢`).hits, p).toEqual(["pii.cn_mobile"]);
      expect(redact(`手机${p}`).text, p).toBe(`手机${placeholder("pii.cn_mobile")}`);
    }
  });

  it("leaves numbers that only look like mainland mobiles or IDs alone", () => {
    const benign = [
      "订单号：13812345678", // labelled as an order number
      "order #13812345678",
      "tracking number 13912345678",
      "12345678901", // 12x is not a mobile segment
      "15412345678", // 154 is not issued
      "138123456789", // 12 digits
      "110105194912310021", // resident ID with a wrong check digit
      "110105199002301234", // 30 February
      "990105194912310029", // no province 99
      "6222 0212 3456 7890 129", // fails Luhn
      "E1234567", // passport numbers have 8 digits after E
      "EI1234567", // I is not used
      "ticket SE12345678",
    ];
    for (const t of benign) expect(redact(t), t).toEqual({ text: t, hits: [] });
  });

  it("names a number the mainland and the generic rules both cover by its mainland kind", () => {
    expect(redact("+86 138 1234 5678").hits).toEqual(["pii.cn_mobile"]);
    expect(redact("6217 0000 1234 5670").hits).toEqual(["pii.cn_bank_card"]);
    expect(redact("4111 1111 1111 1111").hits).toEqual(["pii.credit_card"]);
    expect(redact("old visa 4222222222222").hits).toEqual(["pii.credit_card"]);
    expect(redact("amex 378282246310005").hits).toEqual(["pii.credit_card"]);
  });

  it("leaves a mainland kind that is off to the generic rule that also covers it", () => {
    const off = compilePolicy("", PolicySchema.parse({ pii: { cn_mobile: "off", cn_bank_card: "off" } })).inputRules;
    expect(redactText(off, "+86 138 1234 5678").hits).toEqual(["pii.phone"]);
    expect(redactText(off, "6217 0000 1234 5670").hits).toEqual(["pii.credit_card"]);
    expect(redactText(off, "13812345678").hits).toEqual([]);
  });

  it("reports each match, repeats included", () => {
    expect(redact("a@b.io and c@d.io").hits).toEqual(["pii.email", "pii.email"]);
  });
});

describe("inferMaxLength", () => {
  it("bounds quantifier-free patterns and gives up on quantifiers and back-references", () => {
    expect(inferMaxLength("corp\\.internal")).toBe(28);
    expect(inferMaxLength("(?:foo|bar)baz")).toBe(28);
    expect(inferMaxLength("a+b")).toBeUndefined();
    expect(inferMaxLength("x{2,}")).toBeUndefined();
    expect(inferMaxLength("(a)\\1")).toBeUndefined();
  });
});
