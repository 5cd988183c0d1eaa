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
import { readSecret, readText, Secret, type Fail } from './secret.js';

export interface EndpointConfig {
  name: string;
  url: string;
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
  maxResponseBytes: number;
  clockSkew: number;
  /** Seconds an expired active answer may be served while the endpoint fails; 0 = never. */
  staleIfError: number;
  restricted: boolean;
}

export function resolveEndpoint(
  raw: RawEndpoint,
  env: NodeJS.ProcessEnv,
  fail: Fail,
  warn: (key: string, problem: string) => void = () => {},
): EndpointConfig {
  const clientSecret = readSecret(raw.clientSecret, raw.clientSecretFile, raw.clientSecretEnv, 'clientSecret', env, fail);
  const authorizationValue = readSecret(raw.authorizationValue, raw.authorizationValueFile, null, 'authorizationValue', env, fail);
  const url = new URL(raw.url);
  checkTransport(raw, url, fail, warn);

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
  switch (authMethod) {
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
      if (!isHeaderSafe(clientSecret.reveal())) fail('clientSecret', 'must not contain control characters to be sent as a bearer token');
      break;
    case 'authorization_value':
      if (!authorizationValue) fail('authorizationValue', 'required by authMethod authorization_value');
      if (/[\0\r\n]/.test(authorizationValue.reveal())) fail('authorizationValue', 'must not contain control characters');
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
    url: raw.url,
    method: raw.method,
    tokenParameter: raw.tokenParameter,
    headers,
    authMethod,
    clientId: raw.clientId,
    clientIdHeader: raw.clientIdHeader,
    clientSecret,
    authorizationValue,
    tokenTypeHint: raw.tokenTypeHint,
    tls: resolveTls(raw, url, env, fail),
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
function checkTransport(raw: RawEndpoint, url: URL, fail: Fail, warn: (key: string, problem: string) => void): void {
  if (url.protocol === 'https:') {
    if (raw.allowInsecure) fail('allowInsecure', 'has no effect with an https url');
  } else if (!isLoopback(url.hostname) || (raw.proxy !== null && !isLoopback(new URL(raw.proxy).hostname))) {
    if (!raw.allowInsecure) {
      fail('url', 'http sends the client secret and every token in clear: use https, or set allowInsecure: true on this endpoint (a loopback host, reached without a remote proxy, needs neither)');
    }
    warn('url', 'http (allowed by allowInsecure): the client secret and every token cross the network in clear, and anyone on the path can answer for the endpoint');
  }
  if (raw.issuer === null && raw.audience === null) {
    warn('', 'neither issuer nor audience is set: a token this endpoint calls active is accepted whoever it was issued to or by');
  }
}

/** 127.0.0.0/8, ::1 and localhost, as the URL parser writes them. */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

function isHeaderSafe(value: string): boolean {
  return /^[\x21-\x7e][\x20-\x7e]*$/.test(value) && !value.endsWith(' ');
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function resolveTls(raw: RawEndpoint, url: URL, env: NodeJS.ProcessEnv, fail: Fail): EndpointConfig['tls'] {
  const ca = readText(raw.ca, raw.caFile, 'ca', fail);
  const cert = readText(raw.cert, raw.certFile, 'cert', fail);
  const key = readSecret(raw.key, raw.keyFile, null, 'key', env, fail);
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
  if (cert !== null && key !== null) {
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
