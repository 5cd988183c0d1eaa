/**
 * A real, in-memory OAuth 2.0 authorization server (oidc-provider v9) for tests and demos.
 *
 * - Listens on 127.0.0.1 on an ephemeral port; issuer is http://127.0.0.1:PORT.
 * - Two resource-server ("introspector") clients: one authenticating with client_secret_basic,
 *   one with client_secret_post. They may introspect ANY token.
 * - Application clients (default `app-one`, `app-two`) using the client_credentials grant,
 *   allowed scopes 'read write admin' by default. Their access tokens are opaque, so token
 *   introspection (RFC 7662) is the only way to validate them.
 * - Revocation (RFC 7009) is enabled; a token can be revoked by the client that owns it.
 * - Sender-constrained tokens: a token request with a DPoP proof (RFC 9449) gets a DPoP-bound
 *   token; with `certificateBound`, a client certificate (RFC 8705) sent as a proxy would send it
 *   binds the token to that certificate. Introspection answers carry `cnf` either way.
 *
 * No test-framework imports here: this module is also compiled by tsc to
 * dist/test/support/authorization-server.js and used from plain Node scripts.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { SignJWT, type CryptoKey, type JWK } from 'jose';

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

export interface AppClientOptions {
  clientId: string;
  /** Space-separated scopes the client may request. Default: all configured scopes. */
  scope?: string;
  /** Default: a fresh random secret. */
  clientSecret?: string;
}

export interface StartAuthorizationServerOptions {
  /** Application (client_credentials) clients. Default: `app-one` and `app-two`. */
  clients?: AppClientOptions[];
  /** Scopes known to the server. Default: ['read', 'write', 'admin']. */
  scopes?: string[];
  /** Lifetime of issued access tokens in seconds. Default: 3600. */
  accessTokenTtlSeconds?: number;
  /**
   * Resource indicators (RFC 8707) for which tokens are RFC 9068 JWTs (features.resourceIndicators); a token
   * asked for with `resource` gets that aud. Default: none (every token is opaque).
   */
  jwtResources?: string[];
  /**
   * Enable features.mTLS with certificate-bound access tokens for the application clients
   * (tls_client_certificate_bound_access_tokens). The certificate is read from the
   * CLIENT_CERTIFICATE_HEADER of the token request, as from a TLS-terminating proxy.
   */
  certificateBound?: boolean;
}

/** Request header carrying the URL-encoded PEM of the client certificate at the token endpoint. */
export const CLIENT_CERTIFICATE_HEADER = 'x-test-client-certificate';

/** A DPoP key pair (RFC 9449), as jose makes it. */
export interface DpopKey {
  privateKey: CryptoKey;
  /** The public key as a JWK (no private members). */
  publicJwk: JWK;
  alg: string;
}

export interface IssueTokenOptions {
  /** Space-separated scopes to request. Omitted: no scope parameter is sent (token has no scope). */
  scope?: string;
  /** Which application client gets the token. Default: the first application client. */
  clientId?: string;
  /** RFC 8707 resource: one of jwtResources gives a JWT access token for it. */
  resource?: string;
  /** Bind the token to this DPoP key: a proof of it goes with the token request. */
  dpop?: DpopKey;
  /** Bind the token to this certificate (PEM); needs `certificateBound`. */
  certificate?: string;
}

export interface AuthorizationServer {
  /** e.g. http://127.0.0.1:PORT */
  issuer: string;
  /** The RFC 7662 token introspection endpoint. */
  introspectionUrl: string;
  /** The RFC 7009 token revocation endpoint. */
  revocationUrl: string;
  tokenUrl: string;
  /** Credentials of resource-server clients allowed to call introspection (for any token). */
  introspectors: { basic: ClientCredentials; post: ClientCredentials };
  /** Application clients (client_credentials grant), in configuration order, with their secrets. */
  appClients: ClientCredentials[];
  /** Gets a fresh opaque access token for an application client via a real client_credentials POST. */
  issueToken(options?: IssueTokenOptions): Promise<string>;
  /** Revokes the token at the revocation endpoint, authenticating as the client that owns it. */
  revoke(token: string): Promise<void>;
  /** Number of HTTP requests that reached the introspection endpoint path since start. */
  introspectionCount(): number;
  /** The JWK Set (public signing keys). */
  jwksUrl: string;
  /** Number of HTTP requests for the JWK Set since start. */
  jwksCount(): number;
  /**
   * Sign new tokens with a fresh key from now on; the keys before it stay published unless `dropOld`.
   * Issued tokens are kept (the store is shared by the provider before and after).
   */
  rotateKeys(options?: { dropOld?: boolean }): Promise<void>;
  /** The key id new tokens are signed with. */
  currentKid(): string;
  /** Stops listening and destroys all (keep-alive) connections. */
  close(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------ */
/* Minimal typing for the parts of oidc-provider used here (the package ships no .d.ts).      */
/* ------------------------------------------------------------------------------------------ */

interface OidcClient {
  clientId: string;
  clientAuthMethod: string;
}
interface OidcToken {
  clientId?: string;
}
interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}
interface OidcProviderModule {
  Provider: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: { InvalidRequest: new (description: string) => Error; InvalidTarget: new () => Error };
}

const INTROSPECTION_PATH = '/token/introspection';
const REVOCATION_PATH = '/token/revocation';
const TOKEN_PATH = '/token';
const JWKS_PATH = '/jwks';

let providerModule: Promise<OidcProviderModule> | undefined;

/**
 * Imports oidc-provider lazily. On import it prints "oidc-provider WARNING: Unsupported runtime.
 * Use Node.js v22.x LTS, or a later LTS release." when running on Node 20 (it works on Node 20,
 * it just isn't supported upstream). That single line is filtered out while the module
 * evaluates; everything else passes through to console.warn untouched.
 */
function loadOidcProvider(): Promise<OidcProviderModule> {
  providerModule ??= (async () => {
    const specifier: string = 'oidc-provider';
    const originalWarn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('oidc-provider WARNING: Unsupported runtime')) return;
      originalWarn.apply(console, args);
    };
    try {
      return (await import(specifier)) as OidcProviderModule;
    } finally {
      console.warn = originalWarn;
    }
  })();
  return providerModule;
}

/** One signing key per process (RSA generation costs tens of ms). Supplying it avoids the dev-keys warning. */
let signingJwk: Record<string, unknown> | undefined;
function getSigningJwk(): Record<string, unknown> {
  signingJwk ??= newSigningJwk();
  return signingJwk;
}

function newSigningJwk(): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...(privateKey.export({ format: 'jwk' }) as Record<string, unknown>),
    kid: randomBytes(8).toString('hex'),
    use: 'sig',
    alg: 'RS256',
  };
}

function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/* ------------------------------------------------------------------------------------------ */
/* Own in-memory adapter (the built-in MemoryAdapter prints a warning and is process-global). */
/* ------------------------------------------------------------------------------------------ */

interface StoredEntry {
  payload: Record<string, unknown>;
  expiresAt: number; // epoch ms, Infinity when no expiry
}

function createMemoryAdapterFactory() {
  const store = new Map<string, StoredEntry>();
  const grants = new Map<string, Set<string>>();
  const byUid = new Map<string, string>();
  const byUserCode = new Map<string, string>();

  function get(key: string): Record<string, unknown> | undefined {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  class MemoryAdapter {
    readonly model: string;
    constructor(model: string) {
      this.model = model;
    }
    key(id: string): string {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const key = this.key(id);
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
      store.set(key, { payload, expiresAt });
      if (typeof payload.grantId === 'string') {
        let members = grants.get(payload.grantId);
        if (!members) grants.set(payload.grantId, (members = new Set()));
        members.add(key);
      }
      if (this.model === 'Session' && typeof payload.uid === 'string') byUid.set(payload.uid, id);
      if (typeof payload.userCode === 'string') byUserCode.set(payload.userCode, id);
    }
    async find(id: string): Promise<Record<string, unknown> | undefined> {
      return get(this.key(id));
    }
    async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      const id = byUid.get(uid);
      return id === undefined ? undefined : this.find(id);
    }
    async findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
      const id = byUserCode.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }
    async consume(id: string): Promise<void> {
      const payload = get(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string): Promise<void> {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const key of grants.get(grantId) ?? []) store.delete(key);
      grants.delete(grantId);
    }
  }

  // A plain (non-async) factory function is accepted by oidc-provider as `adapter`.
  return (model: string) => new MemoryAdapter(model);
}

/* ------------------------------------------------------------------------------------------ */

/** A DPoP proof for a token request (no ath: there is no token yet). */
async function dpopProof(key: DpopKey, method: string, url: string): Promise<string> {
  return new SignJWT({ htm: method, htu: url })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk })
    .setIssuedAt()
    .setJti(randomBytes(16).toString('base64url'))
    .sign(key.privateKey);
}

function basicAuthorization({ clientId, clientSecret }: ClientCredentials): string {
  // RFC 6749 section 2.3.1: form-urlencode id and secret before base64.
  const encode = (v: string) => encodeURIComponent(v).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

export async function startAuthorizationServer(
  options: StartAuthorizationServerOptions = {},
): Promise<AuthorizationServer> {
  const scopes = options.scopes ?? ['read', 'write', 'admin'];
  const ttl = options.accessTokenTtlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl <= 0) throw new TypeError('accessTokenTtlSeconds must be a positive integer');

  const appClients: ClientCredentials[] = (options.clients ?? [{ clientId: 'app-one' }, { clientId: 'app-two' }]).map(
    (c) => ({ clientId: c.clientId, clientSecret: c.clientSecret ?? newSecret() }),
  );
  const appScopes = new Map<string, string>(
    (options.clients ?? []).map((c) => [c.clientId, c.scope ?? scopes.join(' ')]),
  );
  const introspectors = {
    basic: { clientId: 'introspector-basic', clientSecret: newSecret() },
    post: { clientId: 'introspector-post', clientSecret: newSecret() },
  };
  const introspectorIds = new Set([introspectors.basic.clientId, introspectors.post.clientId]);
  const secretsById = new Map<string, ClientCredentials>(appClients.map((c) => [c.clientId, c]));

  const { Provider, errors } = await loadOidcProvider();

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const jwtResources = new Set(options.jwtResources ?? []);
  const adapter = createMemoryAdapterFactory();
  let signingKeys = [getSigningJwk()];
  const makeProvider = () => new Provider(issuer, {
    adapter,
    jwks: { keys: signingKeys },
    cookies: { keys: [newSecret(), newSecret()] },
    scopes,
    clients: [
      {
        client_id: introspectors.basic.clientId,
        client_secret: introspectors.basic.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: introspectors.post.clientId,
        client_secret: introspectors.post.clientSecret,
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
      ...appClients.map((c) => ({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: appScopes.get(c.clientId) ?? scopes.join(' '),
        ...(options.certificateBound ? { tls_client_certificate_bound_access_tokens: true } : {}),
      })),
    ],
    routes: { introspection: INTROSPECTION_PATH, revocation: REVOCATION_PATH, token: TOKEN_PATH, jwks: JWKS_PATH },
    // oidc-provider refuses the first token request unless the method mTLS brings is listed.
    ...(options.certificateBound
      ? { clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'self_signed_tls_client_auth'] }
      : {}),
    ttl: { AccessToken: ttl, ClientCredentials: ttl },
    features: {
      devInteractions: { enabled: false },
      dPoP: { enabled: true },
      ...(options.certificateBound
        ? {
            mTLS: {
              enabled: true,
              certificateBoundAccessTokens: true,
              selfSignedTlsClientAuth: true,
              // Standing in for a TLS-terminating proxy: the test sends the certificate it would have seen.
              getCertificate: (ctx: { get(name: string): string }) => {
                const value = ctx.get(CLIENT_CERTIFICATE_HEADER);
                return value ? decodeURIComponent(value) : undefined;
              },
              certificateAuthorized: () => true,
              certificateSubjectMatches: () => true,
            },
          }
        : {}),
      clientCredentials: { enabled: true },
      // Without a resource (or without jwtResources), client_credentials tokens are opaque.
      resourceIndicators: {
        enabled: jwtResources.size > 0,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => {
          if (!jwtResources.has(resource)) throw new errors.InvalidTarget();
          return { scope: scopes.join(' '), audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: ttl };
        },
      },
      // RFC 9701: signed answers for an introspector asking with Accept: application/token-introspection+jwt.
      jwtIntrospection: { enabled: true },
      introspection: {
        enabled: true,
        // Default policy lets any confidential client introspect any token (and prints a notice).
        // Here: the introspector clients may introspect anything; others only their own tokens.
        allowedPolicy: async (_ctx: unknown, client: OidcClient, token: OidcToken) =>
          introspectorIds.has(client.clientId) || token.clientId === client.clientId,
      },
      revocation: {
        enabled: true,
        // Only the owning client may revoke a token (same as the default, minus the notice).
        allowedPolicy: async (_ctx: unknown, client: OidcClient, token: OidcToken) => {
          if (token.clientId === client.clientId) return true;
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
    },
    // Defaults of these print a "you SHOULD change it" notice when first called.
    clientBasedCORS: () => true,
    renderError: (ctx: { type: string; body: unknown }, out: unknown) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  let handler = makeProvider().callback();
  let introspections = 0;
  let jwksRequests = 0;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?', 1)[0];
    if (path === INTROSPECTION_PATH) introspections += 1;
    if (path === JWKS_PATH) jwksRequests += 1;
    handler(req, res);
  });

  async function rotateKeys(rotation: { dropOld?: boolean } = {}): Promise<void> {
    signingKeys = rotation.dropOld ? [newSigningJwk()] : [newSigningJwk(), ...signingKeys];
    handler = makeProvider().callback();
  }

  const tokenUrl = `${issuer}${TOKEN_PATH}`;
  const introspectionUrl = `${issuer}${INTROSPECTION_PATH}`;
  const revocationUrl = `${issuer}${REVOCATION_PATH}`;
  /** token -> owning client, so revoke() can authenticate as the owner. */
  const owners = new Map<string, ClientCredentials>();

  async function issueToken(opts: IssueTokenOptions = {}): Promise<string> {
    const client = opts.clientId === undefined ? appClients[0] : secretsById.get(opts.clientId);
    if (!client) throw new Error(`unknown application client ${opts.clientId ?? '(none configured)'}`);
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (opts.scope !== undefined) form.set('scope', opts.scope);
    if (opts.resource !== undefined) form.set('resource', opts.resource);
    const headers: Record<string, string> = {
      authorization: basicAuthorization(client),
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (opts.dpop) headers.dpop = await dpopProof(opts.dpop, 'POST', tokenUrl);
    if (opts.certificate !== undefined) headers[CLIENT_CERTIFICATE_HEADER] = encodeURIComponent(opts.certificate);
    const res = await request(tokenUrl, { method: 'POST', headers, body: form.toString() });
    const body = (await res.body.json()) as Record<string, unknown>;
    if (res.statusCode !== 200 || typeof body.access_token !== 'string') {
      throw new Error(`token request failed: HTTP ${res.statusCode} ${JSON.stringify(body)}`);
    }
    owners.set(body.access_token, client);
    return body.access_token;
  }

  async function revoke(token: string): Promise<void> {
    const client = owners.get(token) ?? appClients[0];
    if (!client) throw new Error('no application client to revoke with');
    const res = await request(revocationUrl, {
      method: 'POST',
      headers: {
        authorization: basicAuthorization(client),
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`revocation failed: HTTP ${res.statusCode} ${text}`);
    owners.delete(token);
  }

  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeAllConnections();
    });
    return closing;
  }

  return {
    issuer,
    introspectionUrl,
    revocationUrl,
    tokenUrl,
    introspectors,
    appClients,
    issueToken,
    revoke,
    introspectionCount: () => introspections,
    jwksUrl: `${issuer}${JWKS_PATH}`,
    jwksCount: () => jwksRequests,
    rotateKeys,
    currentKid: () => signingKeys[0]!.kid as string,
    close,
  };
}
