/**
 * Turns a YAML file (plus environment overrides) into a validated, typed
 * Config. Every failure is a ConfigError whose message names the key and the
 * problem and never contains a configured value (a value may be a secret).
 */
import { readFileSync } from 'node:fs';
import convict from 'convict';
import YAML from 'yaml';
import { compileTemplate, type IdentityTemplate } from '../policy/identity-template.js';
import { Secret } from './secret.js';
import {
  schema,
  endpointSchema,
  policySchema,
  convictProblems,
  type AuthMethod,
  type RawEndpoint,
  type RawPolicy,
} from './schema.js';

export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  override name = 'ConfigError';
}

export interface EndpointConfig {
  name: string;
  url: string;
  authMethod: AuthMethod;
  clientId: string | null;
  clientSecret: Secret | null;
  authorizationValue: Secret | null;
  tokenTypeHint: string;
  authenticationTimeout: number;
  maxConnections: number;
  maxResponseBytes: number;
  clockSkew: number;
  restricted: boolean;
}

export interface PolicyConfig {
  name: string;
  endpoint: string;
  realm: string;
  mappedIdentity: IdentityTemplate;
  identityHeader: string;
  headerPrefix: string;
  unreachableStatus: number;
  badResponseStatus: number;
}

export interface Config {
  server: {
    grpc: { host: string; port: number };
    ops: { host: string; port: number };
    shutdownTimeout: number;
    maxTokenLength: number;
  };
  log: { level: string; decisions: 'all' | 'deny' | 'none'; allowSampleRate: number; identity: boolean };
  cache: { maxCacheEntries: number; validatedTokenTTL: number };
  policySelector: string;
  defaultPolicy: string;
  endpoints: EndpointConfig[];
  policies: PolicyConfig[];
}

export interface LoadOptions {
  /** Environment used for overrides and clientSecretEnv; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** Read and validate a configuration file. */
export function loadConfigFile(path: string, options: LoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseConfig(text, path, options);
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
    resolveEndpoint(item as RawEndpoint, `${source}: endpoints[${index}].`, env),
  );
  unique(endpoints, `${source}: endpoints`);
  if (endpoints.length === 0) throw new ConfigError(`${source}: endpoints: at least one introspection endpoint is required`);

  const rawPolicies = items('policies', policySchema, props.policies.length > 0 ? props.policies : [{ name: 'default' }]);
  const policies = rawPolicies.map((policy, index) =>
    resolvePolicy(policy as RawPolicy, `${source}: policies[${index}].`, endpoints),
  );
  unique(policies, `${source}: policies`);

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
    const actual = Array.isArray(value) ? 'list' : typeof value;
    if (expected === 'list') continue;
    if (value === null && option.default === null) continue;
    if (actual !== expected) throw new ConfigError(`${where}${key}: must be a ${expected === 'boolean' ? 'boolean (true or false)' : expected}`);
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

function resolveEndpoint(raw: RawEndpoint, where: string, env: NodeJS.ProcessEnv): EndpointConfig {
  const clientSecret = readSecret(raw.clientSecret, raw.clientSecretFile, raw.clientSecretEnv, `${where}clientSecret`, env);
  const authorizationValue = readSecret(
    raw.authorizationValue,
    raw.authorizationValueFile,
    null,
    `${where}authorizationValue`,
    env,
  );
  const authMethod: AuthMethod = raw.authMethod ?? (authorizationValue ? 'authorization_value' : 'client_secret_basic');
  switch (authMethod) {
    case 'client_secret_basic':
    case 'client_secret_post':
      if (!raw.clientId) throw new ConfigError(`${where}clientId: required by authMethod ${authMethod}`);
      if (!clientSecret) {
        throw new ConfigError(`${where}clientSecret: required by authMethod ${authMethod} (inline, clientSecretFile or clientSecretEnv)`);
      }
      break;
    case 'authorization_value':
      if (!authorizationValue) throw new ConfigError(`${where}authorizationValue: required by authMethod authorization_value`);
      if (/[\0\r\n]/.test(authorizationValue.reveal())) {
        throw new ConfigError(`${where}authorizationValue: must not contain control characters`);
      }
      break;
    case 'none':
      break;
  }
  return {
    name: raw.name,
    url: raw.url,
    authMethod,
    clientId: raw.clientId,
    clientSecret,
    authorizationValue,
    tokenTypeHint: raw.tokenTypeHint,
    authenticationTimeout: raw.authenticationTimeout,
    maxConnections: raw.maxConnections,
    maxResponseBytes: raw.maxResponseBytes,
    clockSkew: raw.clockSkew,
    restricted: raw.restricted,
  };
}

function resolvePolicy(raw: RawPolicy, where: string, endpoints: EndpointConfig[]): PolicyConfig {
  let endpointName = raw.endpoint;
  if (endpointName === null) {
    const open = endpoints.filter((e) => !e.restricted);
    if (endpoints.length !== 1 || open.length !== 1) {
      throw new ConfigError(`${where}endpoint: required when more than one endpoint is configured or the only one is restricted`);
    }
    endpointName = open[0]!.name;
  } else if (!endpoints.some((e) => e.name === endpointName)) {
    throw new ConfigError(`${where}endpoint: no endpoint is named "${endpointName}"`);
  }
  let mappedIdentity: IdentityTemplate;
  try {
    mappedIdentity = compileTemplate(raw.mappedIdentity);
  } catch (error) {
    throw new ConfigError(`${where}mappedIdentity: ${(error as Error).message}`);
  }
  if (RESERVED_HEADERS.has(raw.identityHeader)) {
    throw new ConfigError(`${where}identityHeader: ${raw.identityHeader} cannot carry the identity`);
  }
  return {
    name: raw.name,
    endpoint: endpointName,
    realm: raw.realm,
    mappedIdentity,
    identityHeader: raw.identityHeader,
    headerPrefix: raw.headerPrefix,
    unreachableStatus: raw.unreachableStatus,
    badResponseStatus: raw.badResponseStatus,
  };
}

/** Headers the identity must never overwrite: they steer HTTP itself or carry the credential. */
const RESERVED_HEADERS = new Set([
  'authorization',
  'host',
  'connection',
  'content-length',
  'content-type',
  'cookie',
  'keep-alive',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function readSecret(
  inline: string | null,
  file: string | null,
  envName: string | null,
  where: string,
  env: NodeJS.ProcessEnv,
): Secret | null {
  const given = [inline, file, envName].filter((v) => v !== null).length;
  if (given > 1) throw new ConfigError(`${where}: give it inline, as a file or as an environment variable, not several`);
  let value: string | undefined;
  if (inline !== null) value = inline;
  if (file !== null) {
    try {
      value = readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw new ConfigError(`${where}File: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  if (envName !== null) {
    value = env[envName];
    if (value === undefined) throw new ConfigError(`${where}Env: environment variable ${envName} is not set`);
  }
  if (value === undefined) return null;
  if (value === '') throw new ConfigError(`${where}: is empty`);
  return new Secret(value);
}

function unique(items: Array<{ name: string }>, where: string): void {
  const seen = new Set<string>();
  for (const { name } of items) {
    if (seen.has(name)) throw new ConfigError(`${where}: the name "${name}" is used twice`);
    seen.add(name);
  }
}
