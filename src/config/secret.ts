import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A credential that must never reach a log line, an error message or a JSON dump
 * by accident: every way of printing it yields "[redacted]"; only reveal() gives
 * the value, at the one place that sends it to the authorization server.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
