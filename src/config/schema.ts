/**
 * The one place where every configuration option is declared, documented and
 * defaulted. Names follow the products our users come from (MuleSoft Flex
 * Gateway, IBM Verify Access, Express Gateway); the README's reference is
 * written from this file.
 */

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

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'authorization_value', 'none'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

/** Options of one introspection endpoint (an entry of `endpoints`). */
export const endpointSchema = {
  name: {
    doc: 'Name of the endpoint; policies refer to it by this name (IBM Verify Access: name).',
    format: objectName,
    default: null as unknown as string,
  },
  url: {
    doc: 'RFC 7662 introspection endpoint URL (MuleSoft: introspectionURL; IBM: introspection_endpoint).',
    format: httpUrl,
    default: null as unknown as string,
  },
  authMethod: {
    doc:
      'How the service authenticates to the endpoint: client_secret_basic (HTTP Basic with clientId/clientSecret), ' +
      'client_secret_post (clientId/clientSecret in the form body; IBM: auth_method), authorization_value ' +
      '(send authorizationValue verbatim as the Authorization header; MuleSoft/Express Gateway) or none. ' +
      'Defaults to authorization_value when authorizationValue is set, else client_secret_basic.',
    format: (value: unknown) => {
      if (value !== null) oneOf(AUTH_METHODS)(value);
    },
    default: null as AuthMethod | null,
  },
  clientId: {
    doc: 'Client id of this service at the authorization server (IBM: client_id).',
    format: optionalString,
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
  authenticationTimeout: {
    doc: 'Milliseconds to wait for the endpoint to answer; Envoy\'s own deadline shortens it (MuleSoft: authenticationTimeout).',
    format: wholeNumber(1, 120_000),
    default: 10_000,
  },
  maxConnections: {
    doc: 'Most connections kept open to the endpoint.',
    format: wholeNumber(1, 1024),
    default: 32,
  },
  maxResponseBytes: {
    doc: 'Largest introspection response body accepted; a larger one is a bad response.',
    format: wholeNumber(64, 16 * 1024 * 1024),
    default: 64 * 1024,
  },
  clockSkew: {
    doc: 'Seconds of clock difference tolerated when checking the response\'s exp and nbf.',
    format: wholeNumber(0, 600),
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
    doc: 'Name of the policy; Envoy selects it with the per-route context extension named by policySelector.',
    format: objectName,
    default: null as unknown as string,
  },
  endpoint: {
    doc: 'Name of the introspection endpoint this policy asks. May be omitted when exactly one endpoint is configured.',
    format: (value: unknown) => {
      if (value !== null) objectName(value);
    },
    default: null as string | null,
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
  mappedIdentity: {
    doc:
      'Template of the identity sent upstream (IBM: mapped_identity). "{claim}" inserts a claim; "{a|b|c}" ' +
      'inserts the first of the claims that is present. Text outside braces is literal; "{{" and "}}" escape braces.',
    format: nonEmptyString,
    default: '{sub|username|client_id}',
  },
  identityHeader: {
    doc: 'Request header that carries the identity to the upstream.',
    format: headerName,
    default: 'x-auth-subject',
  },
  headerPrefix: {
    doc:
      'Prefix of every header this service may inject. Incoming headers with this prefix (or its "_" spelling) ' +
      'that the service does not set are removed, so a client cannot spoof them.',
    format: headerPrefix,
    default: 'x-auth-',
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
};

/** Items are validated one by one against their own schema by the loader. */
function list(value: unknown): void {
  if (!Array.isArray(value)) throw new Error('must be a list');
}

export const schema = {
  server: {
    grpc: {
      host: {
        doc: 'Address the gRPC (ext_authz and health) server binds to.',
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
    },
    ops: {
      host: {
        doc: 'Address the operations HTTP server (/metrics, /healthz, /readyz) binds to.',
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
    },
    shutdownTimeout: {
      doc: 'Milliseconds in-flight Checks may take to finish after SIGTERM before the server closes their streams.',
      format: wholeNumber(0, 600_000),
      default: 10_000,
      env: 'SHUTDOWN_TIMEOUT',
    },
    maxTokenLength: {
      doc: 'Longest bearer token accepted, in characters; a longer one is answered 400 without asking the endpoint.',
      format: wholeNumber(16, 1024 * 1024),
      default: 8192,
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

export type RawEndpoint = { [K in keyof typeof endpointSchema]: (typeof endpointSchema)[K]['default'] };
export type RawPolicy = { [K in keyof typeof policySchema]: (typeof policySchema)[K]['default'] };


/**
 * convict's validation message, one problem a line, as ours: each line prefixed
 * with where the options sit, unknown keys named plainly, and without the
 * "value was <JSON>" convict appends (a value may be a secret). The `s` flag
 * matters: JSON keeps U+2028/U+2029 raw, and a plain `.` stops there.
 */
export function convictProblems(message: string, prefix: string): string {
  return message
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const unknown = /^configuration param '(.*)' not declared in the schema$/s.exec(line);
      if (unknown) return `${prefix}${unknown[1]}: unknown option`;
      return `${prefix}${line.replace(/: value was .*$/s, '')}`;
    })
    .join('; ');
}
