/**
 * The HTTP request one introspection takes, built from an endpoint's settings:
 * RFC 7662's form POST, or a token-info style GET (Axway), with client
 * authentication, static headers and the client id of a request header
 * (IBM's client_id_hdr). Pure: no I/O.
 */
import type { EndpointConfig } from '../config/load.js';

export interface EndpointRequest {
  readonly method: 'GET' | 'POST';
  /** Path and query; for GET it carries the token. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
}

interface AuthParts {
  /** Authorization header value, if the method sends one. */
  readonly authorization: string | null;
  /** Encoded parameters after the token and hint: "&client_id=...". */
  readonly params: string;
}

export class RequestTemplate {
  readonly #config: EndpointConfig;
  readonly #pathname: string;
  /** The configured URL's own query, without "?". */
  readonly #query: string;
  readonly #headers: Record<string, string>;
  /** "&token_type_hint=..." or "". */
  readonly #hint: string;
  /** Built once when the client id is fixed; per call with clientIdHeader. */
  readonly #fixedAuth: AuthParts | null;
  /** The headers of every call, authorization included, when the client id is fixed: no copy per call. */
  readonly #fixedHeaders: Readonly<Record<string, string>> | null;

  constructor(config: EndpointConfig) {
    this.#config = config;
    if (config.url === null) throw new TypeError(`endpoint ${config.name} has no url to introspect at`);
    const url = new URL(config.url);
    this.#pathname = url.pathname;
    this.#query = url.search.slice(1);
    this.#headers = { accept: 'application/json' };
    // Static headers first: the protocol's own (content-type, authorization) are never theirs to change.
    for (const [name, value] of Object.entries(config.headers)) this.#headers[name] = value.reveal();
    // RFC 9701: a signed answer is asked for, and nothing else will do (the header is ours, not a static one's).
    if (config.responseFormat === 'jwt') this.#headers.accept = 'application/token-introspection+jwt';
    if (config.method === 'POST') this.#headers['content-type'] = 'application/x-www-form-urlencoded';
    this.#hint = config.tokenTypeHint ? `&token_type_hint=${formEncode(config.tokenTypeHint)}` : '';
    this.#fixedAuth = config.clientIdHeader === null ? this.#auth(config.clientId) : null;
    this.#fixedHeaders = this.#fixedAuth === null ? null : this.#headersWith(this.#fixedAuth);
  }

  /**
   * @param clientId the client id read from the request's clientIdHeader; ignored
   *   (the configured clientId is used) when the endpoint has no clientIdHeader
   */
  build(token: string, clientId: string | null = null): EndpointRequest {
    const auth = this.#fixedAuth ?? this.#auth(clientId);
    const params = `${formEncode(this.#config.tokenParameter)}=${formEncode(token)}${this.#hint}${auth.params}`;
    const headers = this.#fixedHeaders ?? this.#headersWith(auth);
    if (this.#config.method === 'GET') {
      const query = this.#query ? `${this.#query}&${params}` : params;
      return { method: 'GET', path: `${this.#pathname}?${query}`, headers, body: null };
    }
    return { method: 'POST', path: this.#query ? `${this.#pathname}?${this.#query}` : this.#pathname, headers, body: params };
  }

  #headersWith(auth: AuthParts): Readonly<Record<string, string>> {
    return auth.authorization === null ? this.#headers : { ...this.#headers, authorization: auth.authorization };
  }

  #auth(clientId: string | null): AuthParts {
    const config = this.#config;
    switch (config.authMethod) {
      case 'client_secret_basic': {
        // RFC 6749 section 2.3.1: id and secret are form-encoded before base64.
        const pair = `${formEncode(clientId!)}:${formEncode(config.clientSecret!.reveal())}`;
        return { authorization: `Basic ${Buffer.from(pair).toString('base64')}`, params: '' };
      }
      case 'client_secret_post':
        return {
          authorization: null,
          params: `&client_id=${formEncode(clientId!)}&client_secret=${formEncode(config.clientSecret!.reveal())}`,
        };
      case 'client_secret_bearer':
        // IBM Verify Access: a client secret without a client id is a bearer token.
        return { authorization: `Bearer ${config.clientSecret!.reveal()}`, params: '' };
      case 'authorization_value':
        return { authorization: config.authorizationValue!.reveal(), params: '' };
      case 'none':
        return { authorization: null, params: clientId ? `&client_id=${formEncode(clientId)}` : '' };
    }
  }
}

/** application/x-www-form-urlencoded encoding of one value. */
export function formEncode(value: string): string {
  const encoded = encodeURIComponent(value);
  // Tokens have no spaces: the common case skips the global replace.
  return encoded.includes('%20') ? encoded.replace(/%20/g, '+') : encoded;
}
