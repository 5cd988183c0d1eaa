/**
 * One `endpoints[]` entry, validated and resolved: secrets, certificates and
 * keys read from their files (again on every reload), client authentication
 * worked out, TLS material checked by building a TLS context from it. Problems
 * are reported through `fail` with the key (relative to the entry) and never
 * the value.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { AUTH_METHOD_ALIASES, type AuthMethod, type RawEndpoint } from './schema.js';
import { readSecret, readText, Secret, type Fail, type SecretSources } from './secret.js';

export interface EndpointConfig {
  name: string;
  kind: 'introspection' | 'jwt';
  allowInsecure: boolean;
  /** The introspection URL; null only for kind jwt without introspect: always. */
  url: string | null;
  responseFormat: 'json' | 'jwt';
  /** Seconds a signed answer's iat may lie in the past. */
  maxAnswerAge: number;
  /** null: found through the issuer's metadata. */
  jwksUri: string | null;
  jwksCooldown: number;
  jwksMaxAge: number;
  algorithms: readonly string[];
  tokenTypes: readonly string[];
  introspect: 'never' | 'always';
  method: 'POST' | 'GET';
  tokenParameter: string;
  /** Extra request headers, names lower-cased; values held as secrets (one may be an API key). */
  headers: Readonly<Record<string, Secret>>;
  authMethod: AuthMethod;
  clientId: string | null;
  clientIdHeader: string | null;
  clientSecret: Secret | null;
  authorizationValue: Secret | null;
  tokenTypeHint: string;
  /** PEM texts; null: the system's trust store, no client certificate. */
  tls: { ca: string | null; cert: string | null; key: Secret | null };
  /** Forward proxy without its credentials, which are in `authorization` (a Proxy-Authorization value). */
  proxy: { url: string; authorization: Secret | null } | null;
  issuer: string | null;
  /** [] when not checked. */
  audience: readonly string[];
  multiValuedScope: boolean;
  authenticationTimeout: number;
  retries: number;
  circuitBreaker: { failures: number; resetTimeout: number };
  maxConnections: number;
  maxInFlight: number;
  queueTimeout: number;
  rateLimitPause: number;
  maxResponseBytes: number;
  clockSkew: number;
  /** Seconds an expired active answer may be served while the endpoint fails; 0 = never. */
  staleIfError: number;
  restricted: boolean;
}

export function resolveEndpoint(
  raw: RawEndpoint,
  sources: SecretSources,
  fail: Fail,
  warn: (key: string, problem: string) => void = () => {},
): EndpointConfig {
  const clientSecret = readSecret(raw.clientSecret, raw.clientSecretFile, raw.clientSecretEnv, 'clientSecret', sources, fail);
  const authorizationValue = readSecret(raw.authorizationValue, raw.authorizationValueFile, null, 'authorizationValue', sources, fail);
  const needsUrl = raw.kind === 'introspection' || raw.introspect === 'always';
  if (needsUrl && raw.url === null) fail('url', raw.kind === 'jwt' ? 'required by introspect: always' : 'is required');
  if (!needsUrl && raw.url !== null) fail('url', 'not used by kind jwt without introspect: always');
  if (raw.kind === 'introspection' && raw.introspect !== 'never') fail('introspect', 'only used by kind jwt');
  const signed = raw.kind === 'jwt' || raw.responseFormat === 'jwt';
  if (signed && raw.issuer === null) fail('issuer', `required by ${raw.kind === 'jwt' ? 'kind jwt' : 'responseFormat jwt'}`);
  if (raw.kind === 'jwt' && raw.audience === null) fail('audience', 'required by kind jwt (RFC 9068: a token for another resource server must not pass)');
  if (raw.responseFormat === 'jwt' && raw.clientId === null) fail('clientId', 'required by responseFormat jwt (the answer\'s aud)');
  if (raw.kind === 'jwt' && raw.responseFormat === 'jwt' && raw.introspect !== 'always') fail('responseFormat', 'not used by kind jwt without introspect: always');
  if (!signed && raw.jwksUri !== null) fail('jwksUri', 'only used by kind jwt or responseFormat jwt');
  // The key set and the metadata that names it decide what is true: the same transport rule as url.
  const keysUrl = raw.jwksUri ?? (signed ? raw.issuer : null);
  if (keysUrl !== null) {
    let parsed: URL;
    try {
      parsed = new URL(keysUrl);
    } catch {
      fail(raw.jwksUri === null ? 'issuer' : 'jwksUri', 'must be an absolute http(s) URL to fetch the key set from');
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') fail(raw.jwksUri === null ? 'issuer' : 'jwksUri', 'must use http or https');
    checkTransport(raw, parsed, fail, warn, raw.jwksUri === null ? 'issuer' : 'jwksUri', false);
  }
  const url = raw.url === null ? null : new URL(raw.url);
  if (url !== null) checkTransport(raw, url, fail, warn, 'url', keysUrl === null);
  // Without a url, the TLS settings are the key set's.
  const tlsUrl = url ?? new URL(keysUrl!);

  const given = raw.authMethod === null ? null : (AUTH_METHOD_ALIASES[raw.authMethod] ?? raw.authMethod);
  const authMethod: AuthMethod =
    given ??
    (authorizationValue
      ? 'authorization_value'
      : clientSecret && !raw.clientId && !raw.clientIdHeader
        ? 'client_secret_bearer'
        : 'client_secret_basic');
  if (raw.clientId && raw.clientIdHeader) fail('clientIdHeader', 'give clientId or clientIdHeader, not both');
  const withClientId = ['client_secret_basic', 'client_secret_post', 'none'];
  if (raw.clientIdHeader && !withClientId.includes(authMethod)) fail('clientIdHeader', `not used by authMethod ${authMethod}`);
  // Without a url nobody is called, so nobody is authenticated to.
  if (raw.url !== null) switch (authMethod) {
    case 'client_secret_basic':
    case 'client_secret_post':
      if (!raw.clientId && !raw.clientIdHeader) fail('clientId', `required by authMethod ${authMethod}`);
      if (!clientSecret) fail('clientSecret', `required by authMethod ${authMethod} (inline, clientSecretFile or clientSecretEnv)`);
      if (authMethod === 'client_secret_post' && raw.method === 'GET') {
        fail('authMethod', 'client_secret_post sends the secret in a form body: it needs method POST');
      }
      break;
    case 'client_secret_bearer':
      if (!clientSecret) fail('clientSecret', `required by authMethod ${authMethod} (inline, clientSecretFile or clientSecretEnv)`);
      if (raw.clientId) fail('clientId', 'not used by authMethod client_secret_bearer (the secret alone is sent)');
      if (clientSecret.read && !isHeaderSafe(clientSecret.reveal())) fail('clientSecret', 'must not contain control characters to be sent as a bearer token');
      break;
    case 'authorization_value':
      if (!authorizationValue) fail('authorizationValue', 'required by authMethod authorization_value');
      if (authorizationValue.read && /[\0\r\n]/.test(authorizationValue.reveal())) fail('authorizationValue', 'must not contain control characters');
      break;
    case 'none':
      break;
  }

  const headers: Record<string, Secret> = {};
  for (const [name, value] of Object.entries(raw.headers)) {
    const lower = name.toLowerCase();
    if (Object.hasOwn(headers, lower)) fail('headers', `${lower} is given twice`);
    headers[lower] = new Secret(value);
  }

  return {
    name: raw.name,
    kind: raw.kind,
    allowInsecure: raw.allowInsecure,
    url: raw.url,
    responseFormat: raw.responseFormat,
    maxAnswerAge: raw.maxAnswerAge,
    jwksUri: raw.jwksUri,
    jwksCooldown: raw.jwksCooldown,
    jwksMaxAge: raw.jwksMaxAge,
    algorithms: Object.freeze([...raw.algorithms]),
    tokenTypes: Object.freeze(raw.tokenTypes.map(normalizeType)),
    introspect: raw.introspect,
    method: raw.method,
    tokenParameter: raw.tokenParameter,
    headers,
    authMethod,
    clientId: raw.clientId,
    clientIdHeader: raw.clientIdHeader,
    clientSecret,
    authorizationValue,
    tokenTypeHint: raw.tokenTypeHint,
    tls: resolveTls(raw, tlsUrl, sources, fail),
    proxy: resolveProxy(raw.proxy),
    issuer: raw.issuer,
    audience: raw.audience === null ? [] : typeof raw.audience === 'string' ? [raw.audience] : raw.audience,
    multiValuedScope: raw.multiValuedScope,
    authenticationTimeout: raw.authenticationTimeout,
    retries: raw.retries,
    circuitBreaker: { failures: raw.circuitBreaker.failures, resetTimeout: raw.circuitBreaker.resetTimeout },
    maxConnections: raw.maxConnections,
    maxInFlight: raw.maxInFlight,
    queueTimeout: raw.queueTimeout,
    rateLimitPause: raw.rateLimitPause,
    maxResponseBytes: raw.maxResponseBytes,
    clockSkew: raw.clockSkew,
    staleIfError: raw.staleIfError,
    restricted: raw.restricted,
  };
}

/**
 * Over http the client secret and every token cross the network in clear,
 * and anyone on the path can answer "active". Allowed without a word only
 * where every hop stays on this host's loopback (the endpoint, and the proxy
 * if there is one: through a remote proxy the first hop leaves the host), as
 * with a sidecar; elsewhere only when the operator says so, with a warning at
 * every load. No issuer or audience check is legal but worth a warning: a
 * token the endpoint calls active for any other resource server passes here.
 */
function checkTransport(
  raw: RawEndpoint,
  url: URL,
  fail: Fail,
  warn: (key: string, problem: string) => void,
  key = 'url',
  checkInsecureUse = true,
): void {
  if (url.protocol === 'https:') {
    if (raw.allowInsecure && checkInsecureUse) fail('allowInsecure', `has no effect with an https ${key}`);
  } else if (!isLoopback(url.hostname) || (raw.proxy !== null && !isLoopback(new URL(raw.proxy).hostname))) {
    if (!raw.allowInsecure) {
      const risk = key === 'url' ? 'sends the client secret and every token in clear' : 'lets anyone on the path hand us the keys that sign tokens';
      fail(key, `http ${risk}: use https, or set allowInsecure: true on this endpoint (a loopback host, reached without a remote proxy, needs neither)`);
    }
    warn(key, 'http (allowed by allowInsecure): the client secret and every token cross the network in clear, and anyone on the path can answer for the endpoint');
  }
  if (key === 'url' && raw.issuer === null && raw.audience === null) {
    warn('', 'neither issuer nor audience is set: a token this endpoint calls active is accepted whoever it was issued to or by');
  }
}

/** typ compared as RFC 8725 says media types are: without case, and without an application/ prefix. */
export function normalizeType(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
}

/** May a URL found at run time (a metadata's jwks_uri) be fetched under the endpoint's transport rule? */
export function permittedUrl(config: EndpointConfig, url: URL): boolean {
  if (url.protocol === 'https:' || config.allowInsecure) return url.protocol === 'https:' || url.protocol === 'http:';
  return url.protocol === 'http:' && isLoopback(url.hostname) && (config.proxy === null || isLoopback(new URL(config.proxy.url).hostname));
}

/** 127.0.0.0/8, ::1 and localhost, as the URL parser writes them. */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

function isHeaderSafe(value: string): boolean {
  return /^[\x21-\x7e][\x20-\x7e]*$/.test(value) && !value.endsWith(' ');
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function resolveTls(raw: RawEndpoint, url: URL, sources: SecretSources, fail: Fail): EndpointConfig['tls'] {
  const ca = readText(raw.ca, raw.caFile, 'ca', fail);
  const cert = readText(raw.cert, raw.certFile, 'cert', fail);
  const key = readSecret(raw.key, raw.keyFile, null, 'key', sources, fail);
  if (ca === null && cert === null && key === null) return { ca: null, cert: null, key: null };
  if (url.protocol !== 'https:') fail(raw.ca !== null || raw.caFile !== null ? 'ca' : 'cert', 'only used with an https url');

  if (ca !== null) {
    const blocks = ca.match(PEM_CERTIFICATE) ?? [];
    if (blocks.length === 0) fail('ca', 'holds no PEM certificate');
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch {
        fail('ca', 'holds a PEM certificate that cannot be read');
      }
    }
  }
  if ((cert === null) !== (key === null)) fail(cert === null ? 'cert' : 'key', 'cert and key go together: give both or neither');
  if (cert !== null && key !== null && key.read) {
    try {
      // Reads both and checks that the key belongs to the certificate.
      createSecureContext({ cert, key: key.reveal() });
    } catch (error) {
      fail('key', `cannot be used with cert (${tlsProblem(error)})`);
    }
  }
  return { ca, cert, key };
}

/** The reason OpenSSL gives, which names the problem, never the key material. */
function tlsProblem(error: unknown): string {
  const reason = (error as { reason?: unknown; code?: unknown }).reason ?? (error as { code?: unknown }).code;
  return typeof reason === 'string' ? reason : 'unreadable';
}

/** Credentials leave the URL and become a Proxy-Authorization value (RFC 7617, as undici builds it). */
function resolveProxy(text: string | null): EndpointConfig['proxy'] {
  if (text === null) return null;
  const url = new URL(text);
  let authorization: Secret | null = null;
  if (url.username || url.password) {
    const pair = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    authorization = new Secret(`Basic ${Buffer.from(pair).toString('base64')}`);
    url.username = '';
    url.password = '';
  }
  return { url: url.origin, authorization };
}
