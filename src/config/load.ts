/**
 * Turns a YAML file (plus environment overrides) into a validated, typed
 * Config. Every failure is a ConfigError whose message names the key and the
 * problem and never contains a configured value (a value may be a secret).
 */
import { readFileSync } from 'node:fs';
import convict from 'convict';
import YAML from 'yaml';
import { checkRoutes, resolvePolicy, type PolicyConfig } from './policy.js';
import { resolveEndpoint, type EndpointConfig } from './endpoint.js';
import { readSecret, type Secret } from './secret.js';
import {
  schema,
  endpointSchema,
  policySchema,
  convictProblems,
  type RawEndpoint,
  type RawPolicy,
} from './schema.js';

export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  override name = 'ConfigError';
}

export type { EndpointConfig } from './endpoint.js';

export type { PolicyConfig } from './policy.js';

export interface Config {
  server: {
    grpc: { host: string; port: number; maxCheckRequestBytes: number };
    ops: { host: string; port: number; maxConnections: number; headersTimeout: number };
    shutdownTimeout: number;
    maxTokenLength: number;
    /** Worker processes; 1: no cluster at all. */
    workers: number;
  };
  log: { level: string; decisions: 'all' | 'deny' | 'none'; allowSampleRate: number; identity: boolean };
  cache: { maxCacheEntries: number; validatedTokenTTL: number; negativeTTL: number; maxNegativeEntries: number };
  /** The admin route's credential; null: no admin route. */
  admin: { token: Secret | null };
  /** The shared cache tier; null: none. */
  redis: RedisConfig | null;
  dpop: { maxProofLength: number; replayEntries: number; nonceLifetime: number; keyCacheEntries: number };
  policySelector: string;
  defaultPolicy: string;
  endpoints: EndpointConfig[];
  policies: PolicyConfig[];
}

export interface RedisConfig {
  url: string;
  username: string | null;
  password: Secret | null;
  keySecret: Secret;
  keyPrefix: string;
  timeout: number;
}

export interface LoadOptions {
  /** Environment used for overrides and clientSecretEnv; process.env by default. */
  env?: NodeJS.ProcessEnv;
  /**
   * Told of each legal but risky setting (an http endpoint allowed by
   * allowInsecure, no issuer or audience check, a prefix rule a host rule
   * hides), one line naming the key; never a value. Ignored by default.
   */
  warn?: (message: string) => void;
}

/** Read and validate a configuration file. */
export function loadConfigFile(path: string, options: LoadOptions = {}): Config {
  return parseConfig(readConfigFile(path), path, options);
}

/** The text of a configuration file, for parseConfig (a cluster's primary hands the same text to its workers). */
export function readConfigFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** Validate configuration given as YAML (or JSON) text; `source` names it in errors. */
export function parseConfig(text: string, source: string, options: LoadOptions = {}): Config {
  // parseDocument rather than parse: parse() reports warnings through
  // process.emitWarning, quoting the source line, which may hold a secret.
  const document = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const problem = document.errors[0] ?? document.warnings[0];
  if (problem) {
    const position = problem.linePos?.[0];
    const at = position ? ` at line ${position.line}, column ${position.col}` : '';
    // The code, not the message: messages quote the source.
    throw new ConfigError(`${source}: YAML syntax error${at}: ${problem.code.toLowerCase().replaceAll('_', ' ')}`);
  }
  let raw: unknown;
  try {
    raw = document.toJS({ maxAliasCount: 100 }) ?? {};
  } catch {
    throw new ConfigError(`${source}: YAML error: aliases expand too far or cannot be resolved`);
  }
  return buildConfig(raw, source, options);
}

/** Validate configuration given as a plain object. */
export function buildConfig(raw: unknown, source = 'configuration', options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const warn = options.warn ?? (() => {});
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${source}: must be a mapping of options at the top level`);
  }
  const top = raw as Record<string, unknown>;
  for (const key of ['endpoints', 'policies'] as const) {
    if (key in top && !Array.isArray(top[key])) throw new ConfigError(`${source}: ${key}: must be a list`);
  }
  checkTypes(schema, top, `${source}: `);
  (top.endpoints as unknown[] | undefined)?.forEach((item, i) => checkTypes(endpointSchema, item, `${source}: endpoints[${i}].`));
  (top.policies as unknown[] | undefined)?.forEach((item, i) => checkTypes(policySchema, item, `${source}: policies[${i}].`));
  applyEnv(schema, top, env, `${source}: `);

  // Environment overrides were applied above with strict parsing; convict's own is lenient.
  const config = convict(schema, { env: {}, args: [] });
  try {
    config.load(top);
    config.validate({ allowed: 'strict' });
  } catch (error) {
    throw new ConfigError(`${source}: ${convictProblems((error as Error).message, '')}`);
  }
  const props = config.getProperties();
  const items = (list: string, itemSchema: object, values: unknown[]) =>
    values.map((item, index) => {
      try {
        const itemConfig = convict(itemSchema as convict.Schema<Record<string, unknown>>, { env: {}, args: [] });
        itemConfig.load(item as object).validate({ allowed: 'strict' });
        return itemConfig.getProperties();
      } catch (error) {
        throw new ConfigError(`${source}: ${convictProblems((error as Error).message, `${list}[${index}].`)}`);
      }
    });

  const endpoints = items('endpoints', endpointSchema, props.endpoints).map((item, index) =>
    resolveEndpoint(
      item as RawEndpoint,
      env,
      (key, problem) => {
        throw new ConfigError(`${source}: endpoints[${index}].${key}: ${problem}`);
      },
      (key, problem) => warn(`${source}: endpoints[${index}]${key === '' ? '' : `.${key}`}: ${problem}`),
    ),
  );
  unique(endpoints, `${source}: endpoints`);
  if (endpoints.length === 0) throw new ConfigError(`${source}: endpoints: at least one introspection endpoint is required`);

  const rawPolicies = items('policies', policySchema, props.policies.length > 0 ? props.policies : [{ name: 'default' }]);
  const policies = rawPolicies.map((policy, index) =>
    resolvePolicy(policy as RawPolicy, endpoints, (key, problem) => {
      throw new ConfigError(`${source}: policies[${index}].${key}: ${problem}`);
    }),
  );
  unique(policies, `${source}: policies`);
  checkRoutes(
    policies,
    (where, problem) => {
      throw new ConfigError(`${source}: ${where}: ${problem}`);
    },
    (where, problem) => warn(`${source}: ${where}: ${problem}`),
  );

  let defaultPolicy = props.defaultPolicy;
  if (defaultPolicy === null) {
    if (policies.length !== 1) {
      throw new ConfigError(`${source}: defaultPolicy: required when more than one policy is configured`);
    }
    defaultPolicy = policies[0]!.name;
  } else if (!policies.some((p) => p.name === defaultPolicy)) {
    throw new ConfigError(`${source}: defaultPolicy: no policy is named "${defaultPolicy}"`);
  }

  return {
    server: props.server,
    log: props.log as Config['log'],
    cache: props.cache,
    admin: resolveAdmin(props.admin, env, source),
    redis: resolveRedis(props.redis, env, source),
    dpop: props.dpop,
    policySelector: props.policySelector,
    defaultPolicy,
    endpoints,
    policies,
  };
}

type SchemaNode = { [key: string]: unknown };

function isOption(node: unknown): node is { default: unknown; env?: string } {
  return typeof node === 'object' && node !== null && 'doc' in node && 'default' in node;
}

/**
 * convict coerces strings into numbers and booleans ("10s" becomes 10, "no"
 * becomes true); a wrong type must be an error instead. The expected type of an
 * option is the type of its default (null defaults are strings).
 */
function checkTypes(node: SchemaNode, raw: unknown, where: string): void {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    if (where.endsWith('].')) throw new ConfigError(`${where.slice(0, -1)}: must be a mapping`);
    return;
  }
  const values = raw as Record<string, unknown>;
  for (const [key, option] of Object.entries(node)) {
    if (!Object.hasOwn(values, key)) continue;
    const value = values[key];
    if (!isOption(option)) {
      if (value !== null && (typeof value !== 'object' || Array.isArray(value))) {
        throw new ConfigError(`${where}${key}: must be a mapping`);
      }
      checkTypes(option as SchemaNode, value, `${where}${key}.`);
      continue;
    }
    const expected = option.default === null ? 'string' : Array.isArray(option.default) ? 'list' : typeof option.default;
    const actual = Array.isArray(value) ? 'list' : value === null ? 'null' : typeof value;
    if (expected === 'list') {
      // convict would JSON.parse a string given for a list, and quote it in the error.
      if (actual !== 'list') throw new ConfigError(`${where}${key}: must be a list`);
      continue;
    }
    if (value === null && option.default === null) continue;
    // An option whose value may be a string or a list of them (`alsoList`) checks the list in its format.
    if (actual === 'list' && 'alsoList' in option) continue;
    if (actual !== expected) {
      const noun = expected === 'boolean' ? 'boolean (true or false)' : expected === 'object' ? 'mapping' : expected;
      throw new ConfigError(`${where}${key}: must be a ${noun}`);
    }
  }
}

/** Environment overrides declared in the schema (`env`), parsed strictly. */
function applyEnv(node: SchemaNode, target: Record<string, unknown>, env: NodeJS.ProcessEnv, where: string): void {
  for (const [key, option] of Object.entries(node)) {
    if (!isOption(option)) {
      const child = (target[key] ??= {}) as Record<string, unknown>;
      applyEnv(option as SchemaNode, child, env, `${where}${key}.`);
      if (Object.keys(child).length === 0) delete target[key];
      continue;
    }
    if (!option.env) continue;
    const text = env[option.env];
    if (text === undefined) continue;
    if (typeof option.default === 'number') {
      if (!/^\d{1,9}$/.test(text)) throw new ConfigError(`${where}${key} (from ${option.env}): must be a whole number`);
      target[key] = Number(text);
    } else {
      target[key] = text;
    }
  }
}

/** Shortest admin token accepted: it guards an operation on every cached answer. */
const MIN_ADMIN_TOKEN = 16;

function resolveAdmin(raw: { token: string | null; tokenFile: string | null; tokenEnv: string | null }, env: NodeJS.ProcessEnv, source: string): Config['admin'] {
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(`${source}: admin.${key}: ${problem}`);
  };
  const token = readSecret(raw.token, raw.tokenFile, raw.tokenEnv, 'token', env, fail);
  if (token !== null && (token.reveal().length < MIN_ADMIN_TOKEN || !/^[\x21-\x7e]+$/.test(token.reveal()))) {
    fail('token', `must be at least ${MIN_ADMIN_TOKEN} printable characters without spaces`);
  }
  return { token };
}

/** Shortest key secret accepted: the HMAC key of every Redis key. */
const MIN_KEY_SECRET = 32;

function resolveRedis(
  raw: {
    url: string | null;
    username: string | null;
    password: string | null;
    passwordFile: string | null;
    keySecret: string | null;
    keySecretFile: string | null;
    keyPrefix: string;
    timeout: number;
  },
  env: NodeJS.ProcessEnv,
  source: string,
): RedisConfig | null {
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(`${source}: redis.${key}: ${problem}`);
  };
  if (raw.url === null) {
    for (const key of ['username', 'password', 'passwordFile', 'keySecret', 'keySecretFile'] as const) {
      if (raw[key] !== null) fail(key, 'has no effect without redis.url');
    }
    return null;
  }
  const password = readSecret(raw.password, raw.passwordFile, null, 'password', env, fail);
  const keySecret = readSecret(raw.keySecret, raw.keySecretFile, null, 'keySecret', env, fail);
  if (keySecret === null) return fail('keySecret', 'required with redis.url (or keySecretFile)');
  if (Buffer.byteLength(keySecret.reveal()) < MIN_KEY_SECRET) fail('keySecret', `must be at least ${MIN_KEY_SECRET} bytes`);
  return { url: raw.url, username: raw.username, password, keySecret, keyPrefix: raw.keyPrefix, timeout: raw.timeout };
}

function unique(items: Array<{ name: string }>, where: string): void {
  const seen = new Set<string>();
  for (const { name } of items) {
    if (seen.has(name)) throw new ConfigError(`${where}: the name "${name}" is used twice`);
    seen.add(name);
  }
}
