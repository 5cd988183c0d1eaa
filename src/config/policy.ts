/**
 * One `policies[]` entry, validated and compiled: templates, scopes, attribute
 * rules and host/path rules are parsed here, once, so a request only runs
 * them. Problems are reported through `fail` with the key (relative to the
 * entry) and never the value.
 */
import { AttributeRuleError, compileAttributeRules, type AttributeRules } from '../policy/attribute-rules.js';
import { compileTemplate, type IdentityTemplate } from '../policy/identity-template.js';
import { compileHost, compilePathPrefix, sameRoute, type RouteRule } from '../policy/routes.js';
import { compileScopes, type ScopeCriteria } from '../policy/scopes.js';
import {
  byteLength,
  isProtectedHeader,
  isSafeHeaderValue,
  MAX_HEADER_VALUE_LENGTH,
  prefixCoversProtected,
  statusHeaderName,
} from '../policy/upstream-headers.js';
import type { RawPolicy } from './schema.js';

export interface PolicyConfig {
  name: string;
  endpoint: string;
  match: readonly RouteRule[];
  realm: string;
  scopes: readonly string[];
  scopeValidationCriteria: ScopeCriteria;
  skipClientIdValidation: boolean;
  consumerBy: 'client_id' | 'username';
  allowedClients: ReadonlySet<string>;
  attributes: AttributeRules;
  mappedIdentity: IdentityTemplate;
  identityFallback: string | null;
  identityHeader: string;
  headerPrefix: string;
  exposeHeaders: boolean;
  attributesHeader: string | null;
  hideCredentials: boolean;
  passThrough: boolean;
  unreachableStatus: number;
  badResponseStatus: number;
}

export type Fail = (key: string, problem: string) => never;

interface EndpointRef {
  name: string;
  restricted: boolean;
}

/** A Set that prints as a list (check-config prints the resolved configuration as JSON). */
class NameSet extends Set<string> {
  toJSON(): string[] {
    return [...this];
  }
}

export function resolvePolicy(raw: RawPolicy, endpoints: readonly EndpointRef[], fail: Fail): PolicyConfig {
  let endpointName = raw.endpoint;
  if (endpointName === null) {
    // A restricted endpoint (IBM Verify Access: restricted) is never picked for a policy that does not name it.
    const open = endpoints.filter((e) => !e.restricted);
    if (endpoints.length !== 1 || open.length !== 1) {
      fail('endpoint', 'required when more than one endpoint is configured or the only one is restricted');
    }
    endpointName = open[0]!.name;
  } else if (!endpoints.some((e) => e.name === endpointName)) {
    fail('endpoint', `no endpoint is named "${endpointName}"`);
  }

  const match = raw.match.map((item, index) => resolveRule(item, (key, problem) => fail(`match[${index}]${key}`, problem)));

  let scopes: readonly string[] = [];
  try {
    scopes = compileScopes(raw.scopes);
  } catch (error) {
    fail('scopes', (error as Error).message);
  }

  const allowedClients = new NameSet();
  raw.allowedClients.forEach((client, index) => {
    if (client === '') fail(`allowedClients[${index}]`, 'must not be empty');
    allowedClients.add(client);
  });
  if (!raw.skipClientIdValidation && allowedClients.size === 0) {
    fail('allowedClients', 'required when skipClientIdValidation is false: list the clients allowed');
  }
  if (raw.skipClientIdValidation && allowedClients.size > 0) {
    fail('skipClientIdValidation', 'must be false when allowedClients is given, or the list would be ignored');
  }

  let attributes!: AttributeRules;
  try {
    attributes = compileAttributeRules(raw.attributes);
  } catch (error) {
    const index = error instanceof AttributeRuleError ? `[${error.index}]` : '';
    fail(`attributes${index}`, (error as Error).message);
  }

  let mappedIdentity!: IdentityTemplate;
  try {
    mappedIdentity = compileTemplate(raw.mappedIdentity);
  } catch (error) {
    fail('mappedIdentity', (error as Error).message);
  }
  const fallback = raw.identityFallback;
  if (fallback !== null && (fallback === '' || !isSafeHeaderValue(fallback) || byteLength(fallback) > MAX_HEADER_VALUE_LENGTH)) {
    fail('identityFallback', `must be 1 to ${MAX_HEADER_VALUE_LENGTH} bytes without control characters`);
  }

  if (prefixCoversProtected(raw.headerPrefix)) {
    fail('headerPrefix', 'would take in headers that Envoy, HTTP or the credential need (such as x-envoy-*, x-forwarded-*, content-*)');
  }
  const status = statusHeaderName(raw.headerPrefix);
  if (isProtectedHeader(raw.identityHeader)) fail('identityHeader', `${raw.identityHeader} cannot carry the identity`);
  if (raw.identityHeader === status) fail('identityHeader', `${status} is the pass-through marker`);
  const attributesHeader = raw.attributesHeader;
  if (attributesHeader !== null) {
    if (isProtectedHeader(attributesHeader)) fail('attributesHeader', `${attributesHeader} cannot carry attributes`);
    if (attributesHeader === raw.identityHeader || attributesHeader === status) {
      fail('attributesHeader', 'must differ from identityHeader and the pass-through marker');
    }
  }

  return {
    name: raw.name,
    endpoint: endpointName,
    match,
    realm: raw.realm,
    scopes,
    scopeValidationCriteria: raw.scopeValidationCriteria,
    skipClientIdValidation: raw.skipClientIdValidation,
    consumerBy: raw.consumerBy,
    allowedClients,
    attributes,
    mappedIdentity,
    identityFallback: fallback,
    identityHeader: raw.identityHeader,
    headerPrefix: raw.headerPrefix,
    exposeHeaders: raw.exposeHeaders,
    attributesHeader,
    hideCredentials: raw.hideCredentials,
    passThrough: raw.passThrough,
    unreachableStatus: raw.unreachableStatus,
    badResponseStatus: raw.badResponseStatus,
  };
}

function resolveRule(item: Record<string, unknown>, fail: Fail): RouteRule {
  for (const key of Object.keys(item)) {
    if (key !== 'host' && key !== 'pathPrefix') fail(`.${key}`, 'unknown option (a rule has host and pathPrefix)');
  }
  const { host, pathPrefix } = item;
  if (host === undefined && pathPrefix === undefined) fail('', 'needs host, pathPrefix or both');
  let compiledHost: { host: string; wildcard: boolean } | null = null;
  if (host !== undefined) {
    if (typeof host !== 'string') fail('.host', 'must be a string');
    try {
      compiledHost = compileHost(host);
    } catch (error) {
      fail('.host', (error as Error).message);
    }
  }
  let prefix: string | null = null;
  if (pathPrefix !== undefined) {
    if (typeof pathPrefix !== 'string') fail('.pathPrefix', 'must be a string');
    try {
      prefix = compilePathPrefix(pathPrefix);
    } catch (error) {
      fail('.pathPrefix', (error as Error).message);
    }
  }
  const rule: RouteRule = { host: compiledHost?.host ?? null, wildcard: compiledHost?.wildcard ?? false, pathPrefix: prefix };
  // Prints as written (check-config), not as the compiled suffix.
  Object.defineProperty(rule, 'toJSON', { value: () => ({ host: host ?? null, pathPrefix: pathPrefix ?? null }), enumerable: false });
  return Object.freeze(rule);
}

/**
 * Rules of different policies that match exactly the same requests would make
 * the choice depend on the order of the file: refused.
 */
export function checkRoutes(policies: readonly PolicyConfig[], fail: (where: string, problem: string) => never): void {
  const seen: Array<{ rule: RouteRule; where: string }> = [];
  policies.forEach((policy, p) =>
    policy.match.forEach((rule, r) => {
      const where = `policies[${p}].match[${r}]`;
      const twin = seen.find((other) => sameRoute(other.rule, rule));
      if (twin) fail(where, `same host and pathPrefix as ${twin.where}`);
      seen.push({ rule, where });
    }),
  );
}
