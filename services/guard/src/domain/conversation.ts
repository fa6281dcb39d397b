/** One turn of the conversation a deep check judges: the request's user-side or assistant-side text. */
export interface Turn {
  role: "user" | "assistant";
  text: string;
}

/** What a deep check judges: the request's messages (input), or one answer to them (output). */
export type DeepSubject =
  | { stage: "input"; conversation: readonly Turn[] }
  | { stage: "output"; conversation: readonly Turn[]; response: string };

/** A guard model's or moderation upstream's answer could not be read as a verdict. */
export class VerdictParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VerdictParseError";
  }
}

/** A parsed verdict: `unsafe` with the categories it named (possibly none), or safe. */
export interface ModelVerdict {
  unsafe: boolean;
  categories: string[];
}

/** The last user turn's text ("" when there is none). */
export function lastUserText(conversation: readonly Turn[]): string {
  for (let i = conversation.length - 1; i >= 0; i--) if (conversation[i]!.role === "user") return conversation[i]!.text;
  return "";
}
