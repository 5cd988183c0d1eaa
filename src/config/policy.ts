/**
 * One `policies[]` entry, validated and compiled: templates, scopes, attribute
 * rules and host/path rules are parsed here, once, so a request only runs
 * them. Problems are reported through `fail` with the key (relative to the
 * entry) and never the value.
 */
import { AttributeRuleError, compileAttributeRules, type AttributeRules } from '../policy/attribute-rules.js';
import { compileTemplate, type IdentityTemplate } from '../policy/identity-template.js';
import { compareRules, compileHost, compilePathPrefix, pathMatches, sameRoute, type RouteRule } from '../policy/routes.js';
import { compileScopes, type ScopeCriteria } from '../policy/scopes.js';
import {
  byteLength,
  isProtectedHeader,
  isSafeHeaderValue,
  MAX_HEADER_VALUE_LENGTH,
  prefixCoversProtected,
  statusHeaderName,
} from '../policy/upstream-headers.js';
import type { CertificateSource } from '../credentials/client-certificate.js';
import { DPOP_ALGORITHMS } from '../credentials/dpop.js';
import type { RawPolicy } from './schema.js';

export interface PolicyConfig {
  name: string;
  /** The endpoint asked about an opaque token: the first of `endpoints`. */
  endpoint: string;
  /** Every endpoint the policy names, in order; more than one: JWTs go by issuer. */
  endpoints: readonly string[];
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
  passThroughCredentials: boolean;
  /** dryRun: a would-be deny is allowed as anonymous, and recorded as one. */
  enforcement: 'enforce' | 'dryRun';
  unreachableStatus: number;
  badResponseStatus: number;
  senderConstraint: 'off' | 'ifBound' | 'required';
  certificateSource: CertificateSource;
  dpopAlgorithms: readonly string[];
  dpopProofWindow: number;
  dpopNonce: boolean;
  removeDpopHeader: boolean;
  bindingHeader: string | null;
}

export type Fail = (key: string, problem: string) => never;

interface EndpointRef {
  name: string;
  restricted: boolean;
  issuer: string | null;
}

/**
 * The endpoints a policy asks. Several are chosen between by a JWT's issuer,
 * so each needs an issuer of its own: two with one issuer, or one with none,
 * would leave the choice to configuration order.
 */
function resolveEndpoints(given: string | string[] | null, endpoints: readonly EndpointRef[], fail: Fail): string[] {
  if (given === null) {
    // A restricted endpoint (IBM Verify Access: restricted) is never picked for a policy that does not name it.
    const open = endpoints.filter((e) => !e.restricted);
    if (endpoints.length !== 1 || open.length !== 1) {
      fail('endpoint', 'required when more than one endpoint is configured or the only one is restricted');
    }
    return [open[0]!.name];
  }
  const names = typeof given === 'string' ? [given] : given;
  const issuers = new Set<string>();
  for (const name of names) {
    const endpoint = endpoints.find((e) => e.name === name);
    if (!endpoint) fail('endpoint', `no endpoint is named "${name}"`);
    if (names.length === 1) break;
    if (endpoint.issuer === null) fail('endpoint', `endpoint ${name} has no issuer, which a list of endpoints chooses by`);
    if (issuers.has(endpoint.issuer)) fail('endpoint', `two endpoints of the list have the issuer of ${name}`);
    issuers.add(endpoint.issuer);
  }
  return names;
}

/** A Set that prints as a list (check-config prints the resolved configuration as JSON). */
class NameSet extends Set<string> {
  toJSON(): string[] {
    return [...this];
  }
}

export function resolvePolicy(raw: RawPolicy, endpoints: readonly EndpointRef[], fail: Fail): PolicyConfig {
  const endpointNames = resolveEndpoints(raw.endpoint, endpoints, fail);

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
  if (raw.passThroughCredentials && !raw.passThrough) fail('passThroughCredentials', 'has no effect without passThrough');
  if (raw.passThroughCredentials && raw.hideCredentials) fail('passThroughCredentials', 'contradicts hideCredentials, which removes the credential on every allow');
  const attributesHeader = raw.attributesHeader;
  if (attributesHeader !== null) {
    if (isProtectedHeader(attributesHeader)) fail('attributesHeader', `${attributesHeader} cannot carry attributes`);
    if (attributesHeader === raw.identityHeader || attributesHeader === status) {
      fail('attributesHeader', 'must differ from identityHeader and the pass-through marker');
    }
  }

  const dpopAlgorithms = [...new Set(raw.dpopAlgorithms)];
  if (dpopAlgorithms.length === 0) fail('dpopAlgorithms', 'must name at least one algorithm');
  raw.dpopAlgorithms.forEach((alg, index) => {
    if (!(DPOP_ALGORITHMS as readonly string[]).includes(alg)) {
      fail(`dpopAlgorithms[${index}]`, `must be one of ${DPOP_ALGORITHMS.join(', ')} (asymmetric JWS algorithms)`);
    }
  });
  const bindingHeader = raw.bindingHeader;
  if (bindingHeader !== null) {
    if (isProtectedHeader(bindingHeader) || bindingHeader === 'dpop') fail('bindingHeader', `${bindingHeader} cannot carry the binding`);
    if (bindingHeader === raw.identityHeader || bindingHeader === attributesHeader || bindingHeader === status) {
      fail('bindingHeader', 'must differ from identityHeader, attributesHeader and the pass-through marker');
    }
    if (raw.senderConstraint === 'off') fail('bindingHeader', 'has no effect with senderConstraint: off');
  }
  if (raw.dpopNonce && raw.senderConstraint === 'off') fail('dpopNonce', 'has no effect with senderConstraint: off');

  return {
    name: raw.name,
    endpoint: endpointNames[0]!,
    endpoints: Object.freeze(endpointNames),
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
    passThroughCredentials: raw.passThroughCredentials,
    enforcement: raw.enforcement,
    unreachableStatus: raw.unreachableStatus,
    badResponseStatus: raw.badResponseStatus,
    senderConstraint: raw.senderConstraint,
    certificateSource: raw.certificateSource,
    dpopAlgorithms: Object.freeze(dpopAlgorithms),
    dpopProofWindow: raw.dpopProofWindow,
    dpopNonce: raw.dpopNonce,
    removeDpopHeader: raw.removeDpopHeader,
    bindingHeader,
  };
}

const RULE_KEYS = new Set(['host', 'pathPrefix', 'pathSeparatedPrefix', 'ignoreCase']);

function resolveRule(item: Record<string, unknown>, fail: Fail): RouteRule {
  for (const key of Object.keys(item)) {
    if (!RULE_KEYS.has(key)) fail(`.${key}`, 'unknown option (a rule has host, pathPrefix or pathSeparatedPrefix, and ignoreCase)');
  }
  const { host, pathPrefix, pathSeparatedPrefix, ignoreCase = false } = item;
  if (pathPrefix !== undefined && pathSeparatedPrefix !== undefined) fail('', 'give pathPrefix or pathSeparatedPrefix, not both');
  if (host === undefined && pathPrefix === undefined && pathSeparatedPrefix === undefined) {
    fail('', 'needs host, pathPrefix (or pathSeparatedPrefix) or both');
  }
  if (typeof ignoreCase !== 'boolean') fail('.ignoreCase', 'must be a boolean (true or false)');
  let compiledHost: { host: string; wildcard: boolean } | null = null;
  if (host !== undefined) {
    if (typeof host !== 'string') fail('.host', 'must be a string');
    try {
      compiledHost = compileHost(host);
    } catch (error) {
      fail('.host', (error as Error).message);
    }
  }
  const separated = pathSeparatedPrefix !== undefined;
  const key = separated ? 'pathSeparatedPrefix' : 'pathPrefix';
  const text = separated ? pathSeparatedPrefix : pathPrefix;
  let prefix: string | null = null;
  if (text !== undefined) {
    if (typeof text !== 'string') fail(`.${key}`, 'must be a string');
    try {
      prefix = compilePathPrefix(text, separated, ignoreCase);
    } catch (error) {
      fail(`.${key}`, (error as Error).message);
    }
  }
  if (ignoreCase && prefix === null) fail('.ignoreCase', 'needs a pathPrefix or pathSeparatedPrefix other than "/" (hosts always ignore case)');
  const rule: RouteRule = {
    host: compiledHost?.host ?? null,
    wildcard: compiledHost?.wildcard ?? false,
    pathPrefix: prefix,
    separated: prefix !== null && separated,
    ignoreCase: prefix !== null && ignoreCase,
  };
  // Prints as written (check-config), not as the compiled suffix.
  const printed = { host: host ?? null, [key]: text ?? null, ...(ignoreCase ? { ignoreCase } : {}) };
  Object.defineProperty(rule, 'toJSON', { value: () => printed, enumerable: false });
  return Object.freeze(rule);
}

/**
 * Rules of different policies that match exactly the same requests would make
 * the choice depend on the order of the file: refused. A prefix rule that a
 * more specific host's rules hide for that host is legal (Envoy's virtual
 * hosts work the same way: the host is chosen first) but rarely meant, so it
 * is a warning that names both rules.
 */
export function checkRoutes(
  policies: readonly PolicyConfig[],
  fail: (where: string, problem: string) => never,
  warn: (where: string, problem: string) => void = () => {},
): void {
  const seen: Array<RouteRule & { where: string; policy: string }> = [];
  policies.forEach((policy, p) =>
    policy.match.forEach((rule, r) => {
      const where = `policies[${p}].match[${r}]`;
      const twin = seen.find((other) => sameRoute(other, rule));
      if (twin) fail(where, `same host and pathPrefix as ${twin.where}`);
      seen.push({ ...rule, where, policy: policy.name });
    }),
  );
  const ordered = [...seen].sort(compareRules);
  for (const rule of ordered) {
    if (rule.pathPrefix === null || (rule.host !== null && !rule.wildcard)) continue;
    // Each more specific host under this rule's host, once.
    const hosts = new Map<string, RouteRule>();
    for (const other of ordered) {
      if (other.host === null || compareRules(other, rule) >= 0 || other.host === rule.host) continue;
      if (rule.host !== null && !other.host.endsWith(rule.host)) continue;
      if (!hosts.has(other.host)) hosts.set(other.host, other);
    }
    for (const [host, sample] of hosts) {
      const winner = ordered.find(
        (other) => other.host === host && other.wildcard === sample.wildcard && pathMatches(other, rule.pathPrefix!, rule.pathPrefix!.length),
      );
      if (winner === undefined || winner.policy === rule.policy) continue;
      const shown = sample.wildcard ? `*${host}` : host;
      warn(
        rule.where,
        `does not apply on host ${shown}: ${winner.where} (policy ${winner.policy}) matches there first, since a rule with a ` +
          'more specific host always wins; add a rule for that host if this prefix should apply there too',
      );
    }
  }
}
