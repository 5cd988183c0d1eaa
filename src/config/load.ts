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
import { readSecret, type Secret, type SecretSources } from './secret.js';
import type { WatchedFile } from './watch.js';
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
    /** Where DELETE /cache is served; it listens only when admin.token is set at start. */
    admin: { host: string; port: number };
    http: HttpServerConfig;
    shutdownTimeout: number;
    maxTokenLength: number;
    /** Envoy's ext_authz timeout as the operator declared it (ms); 0: not declared. */
    envoyTimeout: number;
    /** Worker processes; 1: no cluster at all. */
    workers: number;
  };
  log: { level: string; decisions: 'all' | 'deny' | 'none'; allowSampleRate: number; identity: boolean };
  /** OpenTelemetry export; the rest of its settings come from the OTEL_* environment. */
  tracing: { enabled: boolean };
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
  /**
   * Every file the configuration reads besides itself (secrets, certificates,
   * keys), by the key that names it: a change to one is applied like a reload.
   */
  files: WatchedFile[];
}

/** The HTTP authorization listener (server.http). */
export interface HttpServerConfig {
  enabled: boolean;
  host: string;
  port: number;
  decisionTimeout: number;
  maxConnections: number;
  headersTimeout: number;
  maxHeaderBytes: number;
}

export interface RedisConfig {
  /** A single Redis (or a managed endpoint); null with Sentinel or Cluster. */
  url: string | null;
  /** Sentinel: where to ask for the master, and its name; null otherwise. */
  sentinel: { nodes: RedisNode[]; masterName: string } | null;
  /** Cluster: seed nodes; null otherwise. */
  cluster: { nodes: RedisNode[] } | null;
  username: string | null;
  password: Secret | null;
  keySecret: Secret;
  keyPrefix: string;
  timeout: number;
}

export interface RedisNode {
  host: string;
  port: number;
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
  /**
   * Check everything but the secrets given as files or variables, which are
   * not read (`check-config --skip-secrets`, away from the pod that mounts them).
   * A Config built so is for printing, never for serving.
   */
  skipSecrets?: boolean;
}

/**
 * Settings that are valid but will not do what they seem to, one sentence
 * each, naming the keys; for the log at load and at reload.
 */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  const envoy = config.server.envoyTimeout;
  if (envoy === 0) return warnings;
  config.endpoints.forEach((endpoint, i) => {
    if (endpoint.authenticationTimeout >= envoy) {
      warnings.push(
        `endpoints[${i}].authenticationTimeout (${endpoint.authenticationTimeout} ms) is not below server.envoyTimeout ` +
          `(${envoy} ms): Envoy's deadline ends every slow introspection of ${endpoint.name} first, retries included; ` +
          'set it below what the deadline leaves (e.g. three quarters of it)',
      );
    }
  });
  return warnings;
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
  const sources: SecretSources = { env, skip: options.skipSecrets ?? false };
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
  const fromEnv = new Map<string, string>();
  applyEnv(schema, top, env, `${source}: `, '', fromEnv);

  // Environment overrides were applied above with strict parsing; convict's own is lenient.
  const config = convict(schema, { env: {}, args: [] });
  try {
    config.load(top);
    config.validate({ allowed: 'strict' });
  } catch (error) {
    throw new ConfigError(`${source}: ${convictProblems((error as Error).message, '', fromEnv)}`);
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

  const rawEndpoints = items('endpoints', endpointSchema, props.endpoints) as RawEndpoint[];
  const endpoints = rawEndpoints.map((item, index) =>
    resolveEndpoint(
      item,
      sources,
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
  policies.forEach((policy, index) => {
    // A dryRun policy lets every request through: it must never stay on unnoticed.
    if (policy.enforcement === 'dryRun') {
      warn(`${source}: policies[${index}].enforcement: dryRun: policy ${policy.name} denies nothing (would-be denies go on as anonymous)`);
    }
  });
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

  const built: Config = {
    server: props.server,
    log: props.log as Config['log'],
    tracing: props.tracing,
    cache: props.cache,
    admin: resolveAdmin(props.admin, sources, source),
    redis: resolveRedis(props.redis, sources, source),
    dpop: props.dpop,
    policySelector: props.policySelector,
    defaultPolicy,
    endpoints,
    policies,
    files: referencedFiles(props, rawEndpoints),
  };
  for (const warning of configWarnings(built)) warn(`${source}: ${warning}`);
  return built;
}

const ENDPOINT_FILES = ['clientSecretFile', 'authorizationValueFile', 'caFile', 'certFile', 'keyFile'] as const;

function referencedFiles(
  props: {
    admin: { tokenFile: string | null };
    redis: { url: string | null; sentinels: string[]; clusterNodes: string[]; passwordFile: string | null; keySecretFile: string | null };
  },
  endpoints: RawEndpoint[],
): WatchedFile[] {
  const files: WatchedFile[] = [];
  endpoints.forEach((endpoint, i) => {
    for (const key of ENDPOINT_FILES) {
      const path = endpoint[key];
      if (path !== null) files.push({ key: `endpoints[${i}].${key}`, path });
    }
  });
  if (props.admin.tokenFile !== null) files.push({ key: 'admin.tokenFile', path: props.admin.tokenFile });
  if (props.redis.url !== null || props.redis.sentinels.length > 0 || props.redis.clusterNodes.length > 0) {
    if (props.redis.passwordFile !== null) files.push({ key: 'redis.passwordFile', path: props.redis.passwordFile });
    if (props.redis.keySecretFile !== null) files.push({ key: 'redis.keySecretFile', path: props.redis.keySecretFile });
  }
  return files;
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

/**
 * Environment overrides declared in the schema (`env`), parsed strictly;
 * `fromEnv` gets the path of each option so set and its variable, for errors.
 */
function applyEnv(
  node: SchemaNode,
  target: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  where: string,
  path: string,
  fromEnv: Map<string, string>,
): void {
  for (const [key, option] of Object.entries(node)) {
    if (!isOption(option)) {
      const child = (target[key] ??= {}) as Record<string, unknown>;
      applyEnv(option as SchemaNode, child, env, `${where}${key}.`, `${path}${key}.`, fromEnv);
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
    fromEnv.set(`${path}${key}`, option.env);
  }
}

/** Shortest admin token accepted: it guards an operation on every cached answer. */
const MIN_ADMIN_TOKEN = 16;

function resolveAdmin(raw: { token: string | null; tokenFile: string | null; tokenEnv: string | null }, sources: SecretSources, source: string): Config['admin'] {
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(`${source}: admin.${key}: ${problem}`);
  };
  const token = readSecret(raw.token, raw.tokenFile, raw.tokenEnv, 'token', sources, fail);
  if (token !== null && token.read && (token.reveal().length < MIN_ADMIN_TOKEN || !/^[\x21-\x7e]+$/.test(token.reveal()))) {
    fail('token', `must be at least ${MIN_ADMIN_TOKEN} printable characters without spaces`);
  }
  return { token };
}

/** Shortest key secret accepted: the HMAC key of every Redis key. */
const MIN_KEY_SECRET = 32;

function resolveRedis(
  raw: {
    url: string | null;
    sentinels: string[];
    masterName: string | null;
    clusterNodes: string[];
    username: string | null;
    password: string | null;
    passwordFile: string | null;
    keySecret: string | null;
    keySecretFile: string | null;
    keyPrefix: string;
    timeout: number;
  },
  sources: SecretSources,
  source: string,
): RedisConfig | null {
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(`${source}: redis.${key}: ${problem}`);
  };
  const given = [raw.url !== null, raw.sentinels.length > 0, raw.clusterNodes.length > 0].filter(Boolean).length;
  if (given === 0) {
    for (const key of ['username', 'password', 'passwordFile', 'keySecret', 'keySecretFile', 'masterName'] as const) {
      if (raw[key] !== null) fail(key, 'has no effect without redis.url, redis.sentinels or redis.clusterNodes');
    }
    return null;
  }
  if (given > 1) fail(raw.url !== null ? 'url' : 'sentinels', 'give one of url, sentinels and clusterNodes');
  if (raw.sentinels.length > 0 && raw.masterName === null) fail('masterName', 'required with sentinels');
  if (raw.sentinels.length === 0 && raw.masterName !== null) fail('masterName', 'only used with sentinels');
  const sentinel =
    raw.sentinels.length > 0 ? { nodes: raw.sentinels.map((text, i) => redisNode(text, `sentinels[${i}]`, fail)), masterName: raw.masterName! } : null;
  const cluster = raw.clusterNodes.length > 0 ? { nodes: raw.clusterNodes.map((text, i) => redisNode(text, `clusterNodes[${i}]`, fail)) } : null;
  const password = readSecret(raw.password, raw.passwordFile, null, 'password', sources, fail);
  const keySecret = readSecret(raw.keySecret, raw.keySecretFile, null, 'keySecret', sources, fail);
  if (keySecret === null) return fail('keySecret', 'required with a shared tier (or keySecretFile)');
  if (keySecret.read && Buffer.byteLength(keySecret.reveal()) < MIN_KEY_SECRET) fail('keySecret', `must be at least ${MIN_KEY_SECRET} bytes`);
  return {
    url: raw.url,
    sentinel,
    cluster,
    username: raw.username,
    password,
    keySecret,
    keyPrefix: raw.keyPrefix,
    timeout: raw.timeout,
  };
}

/** host:port, the host a name or an IPv4 address (or [IPv6]), the port 1 to 65535. */
function redisNode(text: string, key: string, fail: (key: string, problem: string) => never): RedisNode {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) fail(key, 'must be host:port');
  return { host: match![1]!.replace(/^\[|\]$/g, ''), port };
}

function unique(items: Array<{ name: string }>, where: string): void {
  const seen = new Set<string>();
  for (const { name } of items) {
    if (seen.has(name)) throw new ConfigError(`${where}: the name "${name}" is used twice`);
    seen.add(name);
  }
}
