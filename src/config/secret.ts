import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A credential that must never reach a log line, an error message or a JSON dump
 * by accident: every way of printing it yields "[redacted]"; only reveal() gives
 * the value, at the one place that sends it to the authorization server.
 */
export class Secret {
  readonly #value: string;
  /**
   * False for the stand-in of a file or variable that was not read
   * (`check-config --skip-secrets`): checks of the value itself are skipped.
   */
  readonly read: boolean;

  constructor(value: string, read = true) {
    this.#value = value;
    this.read = read;
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

/** Where secrets given by reference come from. */
export interface SecretSources {
  env: NodeJS.ProcessEnv;
  /**
   * Read no secret file and no variable: each stands in as an unread Secret,
   * so that a configuration can be checked away from the pod that mounts them.
   */
  skip?: boolean;
}

/** Report a configuration problem with `key` (relative to where the options sit); never returns. */
export type Fail = (key: string, problem: string) => never;

/**
 * A secret given inline, in a file (`<key>File`, surrounding white space
 * ignored; read again on every reload) or in an environment variable
 * (`<key>Env`): at most one of them. null when none is given; an unread
 * Secret for a file or variable when `sources.skip`.
 */
export function readSecret(
  inline: string | null,
  file: string | null,
  envName: string | null,
  key: string,
  sources: SecretSources,
  fail: Fail,
): Secret | null {
  const given = [inline, file, envName].filter((v) => v !== null).length;
  if (given > 1) fail(key, 'give it inline, as a file or as an environment variable, not several');
  if (sources.skip && inline === null && given === 1) return new Secret('', false);
  let value: string | undefined;
  if (inline !== null) value = inline;
  if (file !== null) value = readFile(file, `${key}File`, fail).trim();
  if (envName !== null) {
    value = sources.env[envName];
    if (value === undefined) fail(`${key}Env`, `environment variable ${envName} is not set`);
  }
  if (value === undefined) return null;
  if (value === '') fail(key, 'is empty');
  return new Secret(value);
}

/** A text that is no secret (a certificate) given inline or in a file (`<key>File`); null when neither. */
export function readText(inline: string | null, file: string | null, key: string, fail: Fail): string | null {
  if (inline !== null && file !== null) fail(key, `give it inline or as ${key}File, not both`);
  const value = file !== null ? readFile(file, `${key}File`, fail) : inline;
  if (value !== null && value.trim() === '') fail(key, 'is empty');
  return value;
}

function readFile(path: string, key: string, fail: Fail): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    fail(key, `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
