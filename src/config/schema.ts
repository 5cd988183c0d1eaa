/**
 * The one place where every configuration option is declared, documented and
 * defaulted. Names follow the products our users come from (MuleSoft Flex
 * Gateway, IBM Verify Access, Express Gateway); the README's reference is
 * written from this file.
 */
import { MESSAGE_HEADERS } from '../policy/upstream-headers.js';

function oneOf<T extends string>(values: readonly T[]) {
  return (value: unknown): void => {
    if (!values.includes(value as T)) throw new Error(`must be one of ${values.join(', ')}`);
  };
}

function nonEmptyString(value: unknown): void {
  if (typeof value !== 'string' || value.trim() === '') throw new Error('must be a non-empty string');
}

function optionalString(value: unknown): void {
  if (value !== null && typeof value !== 'string') throw new Error('must be a string');
}

function wholeNumber(min: number, max: number) {
  return (value: unknown): void => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new Error(`must be a whole number from ${min} to ${max}`);
    }
  };
}

function httpUrl(value: unknown): void {
  if (typeof value !== 'string') throw new Error('must be an http(s) URL');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('must be an absolute http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must use http or https');
  if (url.username || url.password) throw new Error('must not carry credentials: use clientId/clientSecret');
  if (url.hash) throw new Error('must not have a fragment');
}

function redisUrl(value: unknown): void {
  if (value === null) return;
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new Error('must be a redis:// or rediss:// URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new Error('must use redis or rediss (TLS)');
  if (url.username || url.password) throw new Error('must not carry credentials: use username and passwordFile');
  if (url.search || url.hash) throw new Error('must not have a query or a fragment');
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
function objectName(value: unknown): void {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new Error('must be 1-64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit');
  }
}

const HEADER_NAME = /^[a-z0-9][a-z0-9-]*$/;
function headerName(value: unknown): void {
  if (typeof value !== 'string' || !HEADER_NAME.test(value)) {
    throw new Error('must be a lower-case header name of letters, digits and "-"');
  }
}
function headerPrefix(value: unknown): void {
  if (typeof value !== 'string' || !/^[a-z0-9][a-z0-9-]*-$/.test(value)) {
    throw new Error('must be a lower-case header name prefix ending in "-", such as "x-auth-"');
  }
}

export const AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'client_secret_bearer',
  'authorization_value',
  'none',
] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
/** Other spellings accepted for authMethod, and what they mean. */
export const AUTH_METHOD_ALIASES: Readonly<Record<string, AuthMethod>> = { bearer: 'client_secret_bearer' };

/**
 * Headers an endpoint's `headers` may not set: the message headers (framing,
 * routing, client authentication: use authorizationValue for a custom
 * Authorization header), and the two the introspection request itself needs.
 */
export const RESERVED_ENDPOINT_HEADERS: ReadonlySet<string> = new Set([...MESSAGE_HEADERS, 'accept', 'expect']);

/** RFC 9110 token characters: what a header name may be made of. */
const HTTP_TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

function staticHeaders(value: unknown): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('must be a mapping of header names to values');
  for (const [name, text] of Object.entries(value)) {
    if (!HTTP_TOKEN.test(name)) throw new Error(`"${name.slice(0, 64)}" is not a valid header name`);
    if (RESERVED_ENDPOINT_HEADERS.has(name.toLowerCase())) throw new Error(`${name.toLowerCase()} cannot be set here`);
    // Header values are not echoed: one may be an API key.
    if (typeof text !== 'string') throw new Error(`the value of ${name} must be a string`);
    if (!/^[\t\x20-\x7e\x80-\xff]{0,8192}$/.test(text)) {
      throw new Error(`the value of ${name} must be at most 8192 characters without control characters`);
    }
  }
}

/** A forward proxy: http(s)://[user:password@]host[:port][/]; credentials allowed (they become Proxy-Authorization). */
function proxyUrl(value: unknown): void {
  if (value === null) return;
  if (typeof value !== 'string') throw new Error('must be an http(s) URL');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('must be an absolute http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must use http or https');
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) throw new Error('must be a proxy origin without a path, query or fragment');
}

/** Asymmetric JWS algorithms (RFC 7518, RFC 8037) a key set may verify. */
export const JWS_ALGORITHMS: readonly string[] = Object.freeze([
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
]);

/** Options of one introspection endpoint (an entry of `endpoints`). */
export const endpointSchema = {
  name: {
    doc: 'Name of the endpoint; policies refer to it by this name (IBM Verify Access: name).',
    format: objectName,
    default: null as unknown as string,
  },
  kind: {
    doc:
      'introspection: ask the RFC 7662 endpoint at url about each new token. jwt: validate RFC 9068 JWT access ' +
      'tokens here, against the issuer\'s keys (jwksUri, or found through the issuer\'s metadata), with no call ' +
      'per token unless introspect says so.',
    format: oneOf(['introspection', 'jwt'] as const),
    default: 'introspection' as 'introspection' | 'jwt',
  },
  url: {
    doc:
      'RFC 7662 introspection endpoint URL (MuleSoft: introspectionURL; IBM: introspection_endpoint): https, or http ' +
      'on loopback (127.0.0.0/8, [::1], localhost, with no proxy off this host) unless allowInsecure. Required, ' +
      'except for kind jwt without introspect: always.',
    format: (value: unknown) => {
      if (value !== null) httpUrl(value);
    },
    default: null as string | null,
  },
  responseFormat: {
    doc:
      'json: RFC 7662 answers. jwt: ask for RFC 9701 signed answers (Accept: application/token-introspection+jwt) ' +
      'and take only those: typ token-introspection+jwt, an algorithm of algorithms, a signature by a key of the ' +
      'issuer\'s key set, iss equal to issuer, aud holding clientId, iat within maxAnswerAge. Anything else, a ' +
      'JSON answer included, is a bad response. Needs issuer and clientId. Encrypted (JWE) answers are not read.',
    format: oneOf(['json', 'jwt'] as const),
    default: 'json' as 'json' | 'jwt',
  },
  maxAnswerAge: {
    doc: 'Seconds a signed (responseFormat jwt) answer\'s iat may lie in the past, clockSkew aside; older is a bad response.',
    format: wholeNumber(1, 3600),
    default: 60,
  },
  jwksUri: {
    doc:
      'URL of the issuer\'s JSON Web Key Set (kind jwt, responseFormat jwt). Unset: read from the issuer\'s ' +
      'metadata (RFC 8414 /.well-known/oauth-authorization-server, then /.well-known/openid-configuration). ' +
      'Fetched with this endpoint\'s TLS, proxy and timeout settings, under the same https rule as url.',
    format: (value: unknown) => {
      if (value !== null) httpUrl(value);
    },
    default: null as string | null,
  },
  jwksCooldown: {
    doc:
      'Milliseconds between two fetches of the key set: a token or answer signed with an unknown key id fetches ' +
      'it again at most this often, so random key ids cannot flood the issuer. The last key set fetched stays ' +
      'in use while the issuer cannot be reached.',
    format: wholeNumber(0, 3_600_000),
    default: 30_000,
  },
  jwksMaxAge: {
    doc:
      'Milliseconds a fetched key set is used before it is fetched again in the background (the old one serving ' +
      'meanwhile, and for as long as the fetch fails), so a key the issuer withdrew stops verifying within this ' +
      'time; 0 never ages it.',
    format: wholeNumber(0, 86_400_000),
    default: 600_000,
  },
  algorithms: {
    doc:
      'Signature algorithms accepted (kind jwt, responseFormat jwt): asymmetric JWS algorithms only; none and ' +
      'the HMAC algorithms are refused, since the key set is public.',
    format: (value: unknown) => {
      if (!Array.isArray(value) || value.length === 0) throw new Error('must be a non-empty list of JWS algorithms');
      for (const alg of value) {
        if (!JWS_ALGORITHMS.includes(alg as string)) throw new Error(`must hold only ${JWS_ALGORITHMS.join(', ')}`);
      }
    },
    default: ['RS256', 'PS256', 'ES256', 'EdDSA'] as string[],
  },
  tokenTypes: {
    doc:
      'JWT typ headers a JWT access token may carry (kind jwt), compared without case and without an application/ ' +
      'prefix: at+jwt per RFC 9068; add JWT for servers that send that.',
    format: (value: unknown) => {
      if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v !== '')) {
        throw new Error('must be a non-empty list of strings');
      }
    },
    default: ['at+jwt'] as string[],
  },
  introspect: {
    doc:
      'For kind jwt: never (the signature and claims decide; a revoked token passes until its exp or the cache ' +
      'TTL) or always (a token whose signature and claims pass is then introspected at url, and that answer, ' +
      'cached as any other, decides: revocation counts, forged tokens cost no call).',
    format: oneOf(['never', 'always'] as const),
    default: 'never' as 'never' | 'always',
  },
  allowInsecure: {
    doc:
      'Accept an http:// url on a host other than loopback (or through a proxy): the client secret and every ' +
      'token then cross the network in clear, and anyone on the path can answer "active". Off: such a url is ' +
      'refused at load. When on, every load logs a warning.',
    format: Boolean,
    default: false,
  },
  method: {
    doc:
      'POST: RFC 7662 form request. GET: the token and other parameters in the query string, as token-info ' +
      'services take them (Axway API Gateway\'s access token information); the token then shows in the ' +
      'endpoint\'s access logs.',
    format: oneOf(['POST', 'GET'] as const),
    default: 'POST' as 'POST' | 'GET',
  },
  tokenParameter: {
    doc: 'Name of the parameter carrying the token: token (RFC 7662), or e.g. access_token (Axway API Gateway).',
    format: (value: unknown) => {
      if (typeof value !== 'string' || !/^[A-Za-z0-9._~-]{1,64}$/.test(value)) {
        throw new Error('must be 1-64 letters, digits, ".", "_", "~" or "-"');
      }
      if (['token_type_hint', 'client_id', 'client_secret'].includes(value)) throw new Error(`${value} is another parameter`);
    },
    default: 'token',
  },
  headers: {
    doc:
      'Extra request headers sent as is on every call, e.g. {x-tenant: acme}. Values count as secrets (an API ' +
      'key may be one): they are never printed. Framing, content and authentication headers cannot be set.',
    format: staticHeaders,
    sensitive: true,
    default: {} as Record<string, string>,
  },
  authMethod: {
    doc:
      'How the service authenticates to the endpoint: client_secret_basic (HTTP Basic with clientId/clientSecret), ' +
      'client_secret_post (clientId/clientSecret in the form body; IBM: auth_method), client_secret_bearer or ' +
      'bearer (clientSecret alone as "Authorization: Bearer <secret>"; IBM), authorization_value (send ' +
      'authorizationValue verbatim as the Authorization header; MuleSoft/Express Gateway) or none. Defaults to ' +
      'authorization_value when authorizationValue is set, client_secret_bearer when clientSecret is set without ' +
      'clientId or clientIdHeader, else client_secret_basic.',
    format: (value: unknown) => {
      if (value !== null && !(typeof value === 'string' && Object.hasOwn(AUTH_METHOD_ALIASES, value))) oneOf(AUTH_METHODS)(value);
    },
    default: null as AuthMethod | null,
  },
  clientId: {
    doc: 'Client id of this service at the authorization server (IBM: client_id).',
    format: optionalString,
    default: null as string | null,
  },
  clientIdHeader: {
    doc:
      'Take the client id sent to the endpoint from this header of the incoming request instead (IBM: ' +
      'client_id_hdr). Cached answers and shared calls are then per token and client id. A request without ' +
      'exactly one such header is denied as an introspection error.',
    format: (value: unknown) => {
      if (value === null) return;
      headerName(value);
      if (value === 'authorization') throw new Error('authorization carries the token, not a client id');
    },
    default: null as string | null,
  },
  clientSecret: {
    doc: 'Client secret, inline. Prefer clientSecretFile or clientSecretEnv (IBM: client_secret).',
    format: optionalString,
    sensitive: true,
    default: null as string | null,
  },
  clientSecretFile: {
    doc: 'File holding the client secret (surrounding white space is ignored), e.g. a mounted Kubernetes Secret.',
    format: optionalString,
    default: null as string | null,
  },
  clientSecretEnv: {
    doc: 'Name of an environment variable holding the client secret.',
    format: optionalString,
    default: null as string | null,
  },
  authorizationValue: {
    doc: 'Authorization header value sent as is, e.g. "Basic dXNlcjpwYXNz" (MuleSoft: authorizationValue; Express Gateway: authorization_value).',
    format: optionalString,
    sensitive: true,
    default: null as string | null,
  },
  authorizationValueFile: {
    doc: 'File holding the authorizationValue.',
    format: optionalString,
    default: null as string | null,
  },
  tokenTypeHint: {
    doc: 'token_type_hint sent with each request (RFC 7662); an empty string omits it (IBM: token_type_hint).',
    format: (value: unknown) => {
      if (typeof value !== 'string') throw new Error('must be a string');
    },
    default: 'access_token',
  },
  ca: {
    doc:
      'PEM certificate(s) of the authorities trusted for this endpoint\'s TLS certificate, instead of the ' +
      'system\'s (IBM: ssl.certificate). Certificates are always verified; no option turns that off.',
    format: optionalString,
    default: null as string | null,
  },
  caFile: {
    doc: 'File holding the PEM CA certificate(s), read again on every reload.',
    format: optionalString,
    default: null as string | null,
  },
  cert: {
    doc: 'PEM client certificate (chain) presented to the endpoint (mutual TLS); needs key.',
    format: optionalString,
    default: null as string | null,
  },
  certFile: {
    doc: 'File holding the PEM client certificate.',
    format: optionalString,
    default: null as string | null,
  },
  key: {
    doc: 'PEM private key of the client certificate, unencrypted. Prefer keyFile.',
    format: optionalString,
    sensitive: true,
    default: null as string | null,
  },
  keyFile: {
    doc: 'File holding the PEM private key of the client certificate.',
    format: optionalString,
    default: null as string | null,
  },
  proxy: {
    doc:
      'Forward proxy, http://[user:password@]host:port (IBM: proxy). https endpoints are reached through a ' +
      'CONNECT tunnel, http ones with absolute-URI requests. The credentials become Proxy-Authorization and ' +
      'are never printed.',
    format: proxyUrl,
    default: null as string | null,
  },
  issuer: {
    doc:
      'When set, an answer (or JWT access token) whose iss is not exactly this is inactive; a policy with several ' +
      'endpoints sends a JWT to the one whose issuer is its iss. Required by kind jwt and responseFormat jwt. ' +
      'Neither issuer nor audience set: a warning at load.',
    format: optionalString,
    default: null as string | null,
  },
  audience: {
    doc: 'When set (a string or a list), an answer whose aud holds none of these is inactive.',
    format: (value: unknown) => {
      if (value === null || typeof value === 'string') return;
      if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v !== '')) {
        throw new Error('must be a string or a non-empty list of strings');
      }
    },
    alsoList: true,
    default: null as string | string[] | null,
  },
  multiValuedScope: {
    doc:
      'Hand the policy the answer\'s space-separated scope as a list of scopes (IBM: multi_valued_scope, which ' +
      'defaults to true). Off by default: scope stays the RFC 7662 string.',
    format: Boolean,
    default: false,
  },
  authenticationTimeout: {
    doc:
      'Milliseconds one introspection may take in all, waiting for a slot, retries and pauses included; ' +
      'Envoy\'s own deadline shortens it (MuleSoft: authenticationTimeout).',
    format: wholeNumber(1, 120_000),
    default: 10_000,
  },
  retries: {
    doc:
      'Further attempts after a connection failure or reset, or an HTTP 502, 503 or 504, within ' +
      'authenticationTimeout, each after a random 10-50 ms pause. 0 never retries.',
    format: wholeNumber(0, 5),
    default: 1,
  },
  circuitBreaker: {
    failures: {
      doc:
        'Consecutive failed introspections (unreachable, timed out or still unanswered at Envoy\'s deadline, ' +
        'HTTP 5xx, after retries) that open the circuit: further Checks are denied at once as circuit_open; ' +
        '0 never opens it. A 429 is no failure (see rateLimitPause).',
      format: wholeNumber(0, 10_000),
      default: 5,
    },
    resetTimeout: {
      doc: 'Milliseconds an open circuit waits before letting one probe call through; its success closes the circuit.',
      format: wholeNumber(100, 600_000),
      default: 10_000,
    },
  },
  maxConnections: {
    doc: 'Most connections kept open to the endpoint.',
    format: wholeNumber(1, 1024),
    default: 32,
  },
  maxInFlight: {
    doc: 'Most introspections under way to the endpoint at once (calls shared by concurrent Checks count once).',
    format: wholeNumber(1, 100_000),
    default: 256,
  },
  queueTimeout: {
    doc: 'Milliseconds a call beyond maxInFlight waits for a slot before it fails (an introspection error); 0: at once.',
    format: wholeNumber(0, 60_000),
    default: 100,
  },
  rateLimitPause: {
    doc:
      'Longest pause, in milliseconds, in calls to the endpoint after it answered HTTP 429: its Retry-After is ' +
      'honoured up to this, a 429 without one pauses this long; Checks that need a call meanwhile are denied ' +
      'as unreachable. A 429 never counts towards the circuit breaker. A 503 with Retry-After pauses calls the ' +
      'same way (not retried; it does count towards the breaker). 0: no pause.',
    format: wholeNumber(0, 60_000),
    default: 1_000,
  },
  maxResponseBytes: {
    doc: 'Largest introspection response body accepted; a larger one is a bad response.',
    format: wholeNumber(64, 16 * 1024 * 1024),
    default: 64 * 1024,
  },
  clockSkew: {
    doc: 'Seconds of clock difference tolerated when checking the response\'s exp, nbf and iat.',
    format: wholeNumber(0, 600),
    default: 0,
  },
  staleIfError: {
    doc:
      'Seconds an expired active answer may still be served while this endpoint fails (error, timeout, circuit ' +
      'open, bad response such as a 5xx or 429), counted past the answer\'s cache lifetime; never past the token\'s ' +
      'exp, never for an inactive answer, never after an admin eviction or a reload that changed the endpoint. ' +
      'Availability against revocation delay: a token revoked at the endpoint may work that much longer. 0 = off.',
    format: wholeNumber(0, 86_400),
    default: 0,
  },
  restricted: {
    doc: 'Reserved for policies that name this endpoint explicitly (IBM Verify Access: restricted).',
    format: Boolean,
    default: false,
  },
};

/** Options of one policy (an entry of `policies`). */
export const policySchema = {
  name: {
    doc: 'Name of the policy; Envoy selects it with the per-route context extension named by policySelector, or match selects it.',
    format: objectName,
    default: null as unknown as string,
  },
  endpoint: {
    doc:
      'Name of the endpoint this policy asks, or a list of names: a JWT then goes to the endpoint whose issuer is ' +
      'its (unverified) iss, where it is verified by that endpoint\'s rules, and is an inactive deny without any ' +
      'call when none matches; an opaque token goes to the first. Every endpoint of a list needs a distinct issuer. ' +
      'May be omitted when exactly one endpoint is configured.',
    format: (value: unknown) => {
      if (value === null) return;
      if (Array.isArray(value)) {
        if (value.length === 0) throw new Error('must be a name or a non-empty list of names');
        value.forEach(objectName);
        return;
      }
      objectName(value);
    },
    alsoList: true,
    default: null as string | string[] | null,
  },
  match: {
    doc:
      'Host and path rules that select this policy when the route names none in context_extensions (Istio sends ' +
      'none): a list of {host, pathPrefix | pathSeparatedPrefix, ignoreCase}. host is a name or *.suffix, ' +
      'compared case-insensitively without the port. pathPrefix matches characters, as Envoy\'s route prefix ' +
      'does (/admin takes in /admin.json and /admin-x); pathSeparatedPrefix matches whole path segments, as ' +
      'Envoy\'s path_separated_prefix does; ignoreCase: true compares the path without case (Envoy\'s ' +
      'case_sensitive: false). An exact host beats a wildcard, a longer prefix a shorter one; see the Policies ' +
      'section of the README.',
    format: listOf('mappings'),
    default: [] as Array<Record<string, unknown>>,
  },
  realm: {
    doc: 'realm parameter of WWW-Authenticate in deny responses (RFC 6750).',
    format: (value: unknown) => {
      if (typeof value !== 'string' || !/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,128}$/.test(value)) {
        throw new Error('must be 1-128 printable ASCII characters without " or \\');
      }
    },
    default: 'api',
  },
  scopes: {
    doc:
      'Scopes the token must carry, space-delimited (MuleSoft: scopes); "" requires none. A missing scope is a ' +
      '403 insufficient_scope naming the required scopes.',
    format: (value: unknown) => {
      if (typeof value !== 'string') throw new Error('must be a string of space-delimited scopes');
    },
    default: '',
  },
  scopeValidationCriteria: {
    doc: 'AND: the token needs every scope in scopes; OR: at least one (MuleSoft: scopeValidationCriteria).',
    format: oneOf(['AND', 'OR'] as const),
    default: 'AND' as 'AND' | 'OR',
  },
  skipClientIdValidation: {
    doc:
      'false: the token\'s client (see consumerBy) must be in allowedClients, else 403 client_not_allowed ' +
      '(MuleSoft: skipClientIdValidation). The default is true, unlike MuleSoft, since the allowed clients ' +
      'must be listed here; false requires allowedClients, and allowedClients requires false.',
    format: Boolean,
    default: true,
  },
  consumerBy: {
    doc: 'Claim that names the client for allowedClients: client_id or username (MuleSoft: consumerBy).',
    format: oneOf(['client_id', 'username'] as const),
    default: 'client_id' as 'client_id' | 'username',
  },
  allowedClients: {
    doc: 'Clients (values of the consumerBy claim) allowed to use routes of this policy when skipClientIdValidation is false.',
    format: listOf('strings'),
    default: [] as string[],
  },
  attributes: {
    doc:
      'Attribute rules (IBM Verify Access: attributes): which introspection members may be exposed upstream. ' +
      'An ordered list of "+pattern" (keep) and "-pattern" (drop), * and ? as wildcards; the first matching ' +
      'rule decides and a member no rule matches is kept. [] keeps every member.',
    format: listOf('strings'),
    default: [] as string[],
  },
  mappedIdentity: {
    doc:
      'Template of the identity sent upstream (IBM: mapped_identity). "{claim}" inserts a claim; "{a|b|c}" ' +
      'inserts the first of the claims that is present. Text outside braces is literal; "{{" and "}}" escape braces.',
    format: nonEmptyString,
    default: '{sub|username|client_id}',
  },
  identityFallback: {
    doc:
      'Identity used when the claims mappedIdentity needs are all missing, e.g. "anonymous-client". Unset ' +
      '(the default): such a token is denied (403 policy_error). Every token without those claims then shares ' +
      'this one identity.',
    format: optionalString,
    default: null as string | null,
  },
  identityHeader: {
    doc: 'Request header that carries the identity to the upstream.',
    format: headerName,
    default: 'x-auth-subject',
  },
  headerPrefix: {
    doc:
      'Prefix of every header this service may inject. Incoming headers with this prefix (or its "_" spelling) ' +
      'that the service does not set are removed, so a client cannot spoof them. It must not take in headers ' +
      'Envoy, HTTP or the credential need (x-envoy-*, x-forwarded-*, content-*, ...).',
    format: headerPrefix,
    default: 'x-auth-',
  },
  exposeHeaders: {
    doc:
      'Send each kept attribute upstream as a header <headerPrefix><name> (MuleSoft: exposeHeaders): names ' +
      'lower-cased with other characters as "-", arrays of plain values joined with a space, objects as JSON.',
    format: Boolean,
    default: false,
  },
  attributesHeader: {
    doc: 'Header that carries every kept attribute as one base64url-encoded JSON object, e.g. x-auth-attributes; unset: none.',
    format: (value: unknown) => {
      if (value !== null) headerName(value);
    },
    default: null as string | null,
  },
  hideCredentials: {
    doc: 'Remove the Authorization header before the request reaches the upstream (Kong: hide_credentials).',
    format: Boolean,
    default: false,
  },
  passThrough: {
    doc:
      'Let a request without a usable token (missing, malformed, inactive or unverifiable) through as anonymous: ' +
      'no identity, <headerPrefix>status: anonymous (Express Gateway: passThrough). A valid token the policy ' +
      'refuses (scope, client) is still denied. The Authorization header of an anonymous request is removed ' +
      '(see passThroughCredentials).',
    format: Boolean,
    default: false,
  },
  enforcement: {
    doc:
      'enforce (the default): a deny is answered. dryRun: every decision is computed, logged and counted as it ' +
      'would have been, and a request that would be denied goes on as anonymous (no identity or attribute headers, ' +
      'spoofed copies removed, the Authorization header removed as with passThrough), its decision recorded as ' +
      'would_deny with the reason; allows are unchanged. For rolling a policy out: a warning is logged at load for ' +
      'each dryRun policy.',
    format: oneOf(['enforce', 'dryRun'] as const),
    default: 'enforce' as 'enforce' | 'dryRun',
  },
  passThroughCredentials: {
    doc:
      'With passThrough: forward the Authorization header of an anonymous request to the upstream. Off (the ' +
      'default): it is removed, since it holds no verified credential (forged, revoked, unverifiable, or of ' +
      'another scheme) and an upstream that reads it itself would trust it. Turn on only for an upstream that ' +
      'checks every credential it reads.',
    format: Boolean,
    default: false,
  },
  unreachableStatus: {
    doc: 'HTTP status of the deny when the endpoint cannot be reached or does not answer in time (MuleSoft: 401).',
    format: wholeNumber(400, 599),
    default: 401,
  },
  badResponseStatus: {
    doc: 'HTTP status of the deny when the endpoint answers something that is not a valid RFC 7662 response (MuleSoft: 500).',
    format: wholeNumber(400, 599),
    default: 500,
  },
  senderConstraint: {
    doc:
      'Sender-constrained tokens (RFC 8705 certificate binding, RFC 9449 DPoP). ifBound (the default): an answer ' +
      'whose cnf names a certificate (x5t#S256) or a DPoP key (jkt) is allowed only with that certificate or a ' +
      'valid DPoP proof by that key; the DPoP scheme is accepted. required: also denies tokens without a binding. ' +
      'off: cnf is ignored and "Authorization: DPoP" is not read (a bound token then works as a bearer token).',
    format: oneOf(['off', 'ifBound', 'required'] as const),
    default: 'ifBound' as 'off' | 'ifBound' | 'required',
  },
  certificateSource: {
    doc:
      'Where the client certificate of a certificate-bound token comes from: peer (Envoy\'s ' +
      'attributes.source.certificate, needs include_peer_certificate: true on the ext_authz filter and TLS ending ' +
      'at that Envoy), xfcc (the x-forwarded-client-cert header, Hash or Cert) or clientCert (the RFC 9440 ' +
      'Client-Cert header). Name a header source only when the proxy in front sets it and removes client-sent ' +
      'copies (Envoy: forward_client_cert_details: SANITIZE_SET): a client can send these headers itself.',
    format: oneOf(['peer', 'xfcc', 'clientCert'] as const),
    default: 'peer' as 'peer' | 'xfcc' | 'clientCert',
  },
  dpopAlgorithms: {
    doc:
      'JWS algorithms accepted for DPoP proofs, also announced in the DPoP challenge (algs). Asymmetric ones ' +
      'only: ES256, ES384, ES512, PS256, PS384, PS512, RS256, RS384, RS512, EdDSA, Ed25519.',
    format: listOf('strings'),
    default: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'] as string[],
  },
  dpopProofWindow: {
    doc:
      'Seconds a DPoP proof\'s iat may lie before or after this service\'s clock; the jti of each accepted proof ' +
      'is remembered that long after its iat, so a replay is refused.',
    format: wholeNumber(1, 600),
    default: 60,
  },
  dpopNonce: {
    doc:
      'Require server-supplied DPoP nonces (RFC 9449 section 9): a proof without a nonce this service handed out ' +
      'within the last two dpop.nonceLifetime slots is denied 401 use_dpop_nonce with a DPoP-Nonce header, and ' +
      'every allowed DPoP request gets the current nonce in DPoP-Nonce. Replicas agree on nonces only when they ' +
      'share redis.keySecret.',
    format: Boolean,
    default: false,
  },
  removeDpopHeader: {
    doc: 'Remove the client\'s DPoP header before the request reaches the upstream.',
    format: Boolean,
    default: false,
  },
  bindingHeader: {
    doc:
      'Header that tells the upstream the confirmed binding of an allowed sender-constrained token, as ' +
      '"dpop <jkt>" or "mtls <x5t#S256>"; unset: none (the binding is always in dynamic_metadata).',
    format: (value: unknown) => {
      if (value !== null) headerName(value);
    },
    default: null as string | null,
  },
};

/** Items are validated one by one against their own schema by the loader. */
function list(value: unknown): void {
  if (!Array.isArray(value)) throw new Error('must be a list');
}

/** A list whose items the loader checks one by one, naming each (`match[2].host`). */
function listOf(items: 'strings' | 'mappings') {
  return (value: unknown): void => {
    if (!Array.isArray(value)) throw new Error(`must be a list of ${items}`);
    for (const item of value) {
      const ok = items === 'strings' ? typeof item === 'string' : item !== null && typeof item === 'object' && !Array.isArray(item);
      if (!ok) throw new Error(`must be a list of ${items}`);
    }
  };
}

export const schema = {
  server: {
    grpc: {
      host: {
        doc:
          'Address the gRPC (ext_authz and health) server binds to. 0.0.0.0 (every interface) suits a pod; on a ' +
          'shared host bind 127.0.0.1 or the interface Envoy uses.',
        format: nonEmptyString,
        default: '0.0.0.0',
        env: 'GRPC_HOST',
      },
      port: {
        doc: 'Port of the gRPC server; 0 picks a free port.',
        format: wholeNumber(0, 65535),
        default: 9001,
        env: 'GRPC_PORT',
      },
      maxCheckRequestBytes: {
        doc:
          'Largest CheckRequest taken, in bytes. gRPC refuses a larger one with RESOURCE_EXHAUSTED before this ' +
          'service sees it, which Envoy counts as an error (failure_mode_allow: true lets the request through): keep ' +
          'it above what Envoy sends, its with_request_body.max_request_bytes plus max_request_headers_kb plus 64 KiB.',
        format: wholeNumber(1024 * 1024, 256 * 1024 * 1024),
        default: 16 * 1024 * 1024,
      },
    },
    ops: {
      host: {
        doc:
          'Address the operations HTTP server (/metrics, /healthz, /readyz; no credential needed) binds to. 0.0.0.0 ' +
          'suits a pod (probes, Prometheus); elsewhere bind 127.0.0.1 or limit the port.',
        format: nonEmptyString,
        default: '0.0.0.0',
        env: 'OPS_HOST',
      },
      port: {
        doc: 'Port of the operations HTTP server; 0 picks a free port.',
        format: wholeNumber(0, 65535),
        default: 9090,
        env: 'OPS_PORT',
      },
      maxConnections: {
        doc:
          'Most connections open at once on the operations port; more are closed as soon as they are accepted, ' +
          'so its clients cannot take the file descriptors the introspection client needs.',
        format: wholeNumber(1, 10_000),
        default: 64,
      },
      headersTimeout: {
        doc:
          'Milliseconds a connection to the operations port has to send its request headers; one that is slower ' +
          '(a slow-loris client) is closed within half a second after.',
        format: wholeNumber(100, 10_000),
        default: 5000,
      },
    },
    admin: {
      host: {
        doc:
          'Address of the admin HTTP server (DELETE /cache). Loopback by default: reach it with kubectl port-forward or ' +
          'from the pod; give another address only where a NetworkPolicy admits just the operators.',
        format: nonEmptyString,
        default: '127.0.0.1',
        env: 'ADMIN_HOST',
      },
      port: {
        doc:
          'Port of the admin HTTP server, apart from the ops port that Prometheus reaches; it listens only when an admin ' +
          'token is configured at start. 0 picks a free port.',
        format: wholeNumber(0, 65535),
        default: 9091,
        env: 'ADMIN_PORT',
      },
    },
    http: {
      enabled: {
        doc:
          'Serve the HTTP authorization mode: sub-requests from Envoy http_service (Istio envoyExtAuthzHttp), nginx ' +
          'auth_request (ingress-nginx auth-url), Caddy forward_auth and Traefik ForwardAuth, decided by the same ' +
          'pipeline as gRPC Checks (see the README, HTTP mode). Off by default.',
        format: Boolean,
        default: false,
      },
      host: {
        doc:
          'Address the HTTP authorization server binds to. Only the proxy should reach it: the answers tell whether a ' +
          'token is good, and the original-request headers are trusted as the proxy sent them.',
        format: nonEmptyString,
        default: '0.0.0.0',
        env: 'HTTP_HOST',
      },
      port: {
        doc: 'Port of the HTTP authorization server; 0 picks a free port.',
        format: wholeNumber(0, 65535),
        default: 9002,
        env: 'HTTP_PORT',
      },
      decisionTimeout: {
        doc:
          'Milliseconds a sub-request may take to be decided; past it the answer is the deny of an unreachable ' +
          'endpoint (the policy\'s unreachableStatus). Keep it below the proxy\'s own timeout (Envoy http_service: ' +
          'timeout, default 200 ms; nginx: proxy_read_timeout), or the proxy answers its own error first.',
        format: wholeNumber(10, 600_000),
        default: 5000,
      },
      maxConnections: {
        doc: 'Most connections open at once on the HTTP authorization port; more are closed as soon as they are accepted.',
        format: wholeNumber(1, 100_000),
        default: 1024,
      },
      headersTimeout: {
        doc: 'Milliseconds a connection to the HTTP authorization port has to send its request headers; a slower one is closed.',
        format: wholeNumber(100, 60_000),
        default: 10_000,
      },
      maxHeaderBytes: {
        doc:
          'Largest request head (request line and headers) taken, in bytes; a larger one is answered 431, which every ' +
          'proxy turns into a deny. Keep it above what the proxy forwards (Envoy: max_request_headers_kb, 60 KiB by default).',
        format: wholeNumber(8 * 1024, 1024 * 1024),
        default: 80 * 1024,
      },
    },
    shutdownTimeout: {
      doc: 'Milliseconds in-flight Checks may take to finish after SIGTERM before the server closes their streams.',
      format: wholeNumber(0, 600_000),
      default: 10_000,
      env: 'SHUTDOWN_TIMEOUT',
    },
    envoyTimeout: {
      doc:
        'Envoy\'s ext_authz timeout (grpc_service.timeout; Envoy\'s default is 200, Istio\'s 600000), in ' +
        'milliseconds, when known: each Check\'s own deadline is what bounds it, this only lets the loader warn ' +
        'about an endpoint whose authenticationTimeout could never apply. 0: not declared.',
      format: wholeNumber(0, 3_600_000),
      default: 0,
    },
    maxTokenLength: {
      doc: 'Longest bearer token accepted, in characters; a longer one is answered 400 without asking the endpoint.',
      format: wholeNumber(16, 1024 * 1024),
      default: 8192,
    },
    workers: {
      doc:
        'Worker processes sharing the gRPC port, each with its own cache; 1 runs everything in one process. ' +
        'With more, a primary process supervises them and serves the ops port for all.',
      format: wholeNumber(1, 64),
      default: 1,
      env: 'WORKERS',
    },
  },
  log: {
    level: {
      doc: 'Log level: fatal, error, warn, info, debug, trace or silent.',
      format: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
      default: 'info',
      env: 'LOG_LEVEL',
    },
    decisions: {
      doc: 'Which decisions get a log line at info: all, deny (denies only) or none.',
      format: oneOf(['all', 'deny', 'none'] as const),
      default: 'all',
    },
    allowSampleRate: {
      doc: 'Fraction (0 to 1) of allow decisions logged when decisions is all; denies are always logged.',
      format: (value: unknown) => {
        if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw new Error('must be a number from 0 to 1');
      },
      default: 1,
    },
    identity: {
      doc: 'Include the identity sent upstream in decision log lines (off: identities are personal data).',
      format: Boolean,
      default: false,
    },
  },
  tracing: {
    enabled: {
      doc:
        'Export OpenTelemetry traces over OTLP/HTTP: a span per Check and HTTP sub-request, children for ' +
        'introspection calls, JWKS fetches and shared cache lookups, and trace ids as exemplars on the latency ' +
        'histograms. Where to and how much is read from the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, ' +
        'OTEL_TRACES_SAMPLER, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_SERVICE_NAME...). Off: the SDK is not even loaded. ' +
        'Read at start only.',
      format: Boolean,
      default: false,
      env: 'TRACING_ENABLED',
    },
  },
  cache: {
    maxCacheEntries: {
      doc:
        'Most introspection answers kept in memory (MuleSoft: maxCacheEntries). Least recently used go first; ' +
        'eviction may begin once half this number is held, and the cache never holds more.',
      format: wholeNumber(0, 10_000_000),
      default: 1000,
    },
    validatedTokenTTL: {
      doc:
        'Seconds an active introspection answer is reused, never past the token\'s exp; 0 disables caching ' +
        '(MuleSoft: validatedTokenTTL; Express Gateway: ttl).',
      format: wholeNumber(0, 86_400),
      default: 600,
    },
    negativeTTL: {
      doc:
        'Seconds an inactive answer is reused, so repeats of a bad token do not reach the endpoint; 0 disables ' +
        'negative caching. Kept apart from active answers, in an LRU of its own.',
      format: wholeNumber(0, 3600),
      default: 10,
    },
    maxNegativeEntries: {
      doc: 'Most inactive answers kept; a flood of bad tokens pushes out only these, never active answers.',
      format: wholeNumber(0, 10_000_000),
      default: 1000,
    },
  },
  admin: {
    token: {
      doc:
        'Credential of the admin route DELETE /cache on the ops port (Authorization: Bearer <token>), at least ' +
        '16 characters. Unset (with tokenFile and tokenEnv): the route does not exist (404). Prefer tokenFile.',
      format: optionalString,
      sensitive: true,
      default: null as string | null,
    },
    tokenFile: {
      doc: 'File holding the admin token (surrounding white space ignored), read again on every reload.',
      format: optionalString,
      default: null as string | null,
    },
    tokenEnv: {
      doc: 'Name of an environment variable holding the admin token.',
      format: optionalString,
      default: null as string | null,
    },
  },
  redis: {
    url: {
      doc:
        'Shared second cache tier and cluster-wide eviction in Redis: redis://host:port[/db], or rediss:// for TLS. ' +
        'Unset (the default): no shared tier, each replica caches on its own.',
      format: redisUrl,
      default: null as string | null,
    },
    sentinels: {
      doc:
        'Instead of url: the Sentinels (host:port each) that tell where the master named masterName is, so the ' +
        'shared tier follows a failover. Plain TCP; username and password are the master\'s (and the Sentinels\').',
      format: listOf('strings'),
      default: [] as string[],
    },
    masterName: {
      doc: 'With sentinels: the name the Sentinels monitor the master under.',
      format: optionalString,
      default: null as string | null,
    },
    clusterNodes: {
      doc:
        'Instead of url: seed nodes (host:port each) of a Redis Cluster; the others are found from them. Plain TCP. ' +
        'Each command names one key, so no command spans hash slots; evictions go on the cluster-wide channel.',
      format: listOf('strings'),
      default: [] as string[],
    },
    username: {
      doc: 'Redis ACL user name (Redis 6+); unset: the default user.',
      format: optionalString,
      default: null as string | null,
    },
    password: {
      doc: 'Redis password, inline. Prefer passwordFile.',
      format: optionalString,
      sensitive: true,
      default: null as string | null,
    },
    passwordFile: {
      doc: 'File holding the Redis password (surrounding white space ignored).',
      format: optionalString,
      default: null as string | null,
    },
    keySecret: {
      doc:
        'Deployment secret (at least 32 bytes) under which Redis keys are HMACs of the token; the same at every ' +
        'replica. Required with url. Prefer keySecretFile.',
      format: optionalString,
      sensitive: true,
      default: null as string | null,
    },
    keySecretFile: {
      doc: 'File holding the key secret (surrounding white space ignored).',
      format: optionalString,
      default: null as string | null,
    },
    keyPrefix: {
      doc: 'Prefix of every Redis key and of the eviction channel, so several deployments can share one Redis.',
      format: (value: unknown) => {
        if (typeof value !== 'string' || !/^[\x21-\x7e]{0,64}$/.test(value)) throw new Error('must be at most 64 printable characters without spaces');
      },
      default: 'authz:',
    },
    timeout: {
      doc: 'Milliseconds a Redis lookup may take before it counts as a miss and the endpoint is asked.',
      format: wholeNumber(1, 1000),
      default: 20,
    },
  },
  dpop: {
    maxProofLength: {
      doc: 'Longest DPoP proof accepted, in characters; a longer one is an invalid_dpop_proof without further work.',
      format: wholeNumber(256, 64 * 1024),
      default: 4096,
    },
    replayEntries: {
      doc:
        'Most DPoP proof ids (jti) remembered in memory for replay detection. It must exceed the proofs accepted ' +
        'within dpopProofWindow: when full of live ids the oldest goes, and a replay of that proof at this replica ' +
        'would pass (counted by authz_dpop_replay_overflows_total). With redis.url, ids are also kept in Redis, ' +
        'so a proof replayed at another replica is refused too.',
      format: wholeNumber(1000, 10_000_000),
      default: 100_000,
    },
    nonceLifetime: {
      doc: 'Seconds a DPoP nonce is handed out (dpopNonce); it is accepted for as long again after.',
      format: wholeNumber(10, 3600),
      default: 300,
    },
    keyCacheEntries: {
      doc: 'Most imported DPoP public keys kept, so a client that signs every request with one key costs one import.',
      format: wholeNumber(1, 1_000_000),
      default: 1000,
    },
  },
  policySelector: {
    doc: 'Key of Envoy\'s per-route context_extensions that names the policy of a route.',
    format: nonEmptyString,
    default: 'policy',
  },
  defaultPolicy: {
    doc: 'Policy used when a request names none. May be omitted when exactly one policy is configured.',
    format: (value: unknown) => {
      if (value !== null) objectName(value);
    },
    default: null as string | null,
  },
  endpoints: {
    doc: 'Introspection endpoints, each with a unique name.',
    format: list,
    default: [] as Array<Record<string, unknown>>,
  },
  policies: {
    doc: 'Policies, each with a unique name. When none is configured, one policy named "default" with default options is used.',
    format: list,
    default: [] as Array<Record<string, unknown>>,
  },
};

/** The values of a schema's options as convict returns them, nested groups included. */
type RawValues<S> = { [K in keyof S]: S[K] extends { default: infer D } ? D : RawValues<S[K]> };
export type RawEndpoint = RawValues<typeof endpointSchema>;
export type RawPolicy = { [K in keyof typeof policySchema]: (typeof policySchema)[K]['default'] };


/**
 * convict's validation message, one problem a line, as ours: each line prefixed
 * with where the options sit, unknown keys named plainly, and without the
 * "value was <JSON>" convict appends (a value may be a secret). The `s` flag
 * matters: JSON keeps U+2028/U+2029 raw, and a plain `.` stops there.
 */
export function convictProblems(message: string, prefix: string, fromEnv: ReadonlyMap<string, string> = new Map()): string {
  return message
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const unknown = /^configuration param '(.*)' not declared in the schema$/s.exec(line);
      if (unknown) return `${prefix}${unknown[1]}: unknown option`;
      const problem = line.replace(/: value was .*$/s, '');
      // A value from the environment is looked for in the environment, not in the file.
      const at = problem.indexOf(': ');
      const variable = at > 0 ? fromEnv.get(problem.slice(0, at)) : undefined;
      return `${prefix}${variable ? `${problem.slice(0, at)} (from ${variable})${problem.slice(at)}` : problem}`;
    })
    .join('; ');
}
