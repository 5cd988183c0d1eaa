/**
 * Decision -> CheckResponse bytes: the one place that builds Envoy's answers,
 * written straight to the wire as the hot path's serializer. Every answer is
 * an OK RPC carrying a decision in `status`; a deny always has a non-zero
 * code, since an absent status reads as "allow".
 *
 * What allows made from one cached answer share (the headers set upstream and
 * the dynamic metadata, see CompiledPolicy.evaluations) is encoded once and
 * reused; only the headers to remove and those added to the client's
 * response (a DPoP nonce) depend on the request.
 *
 * Field numbers are those of proto/ (envoy.service.auth.v3,
 * envoy.config.core.v3, google.rpc, google.protobuf.Struct).
 */
import { denyBody, type Allow, type Deny, type Decision, type HeaderToSet, type Metadata } from '../decision.js';

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** google.rpc.Code values used in CheckResponse.status. */
export const RpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A field's key on the wire: its number and wire type. */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const key = (field: number, wireType: number) => (field << 3) | wireType;

// CheckResponse
const RESPONSE_STATUS = key(1, LENGTH_DELIMITED);
const RESPONSE_DENIED = key(2, LENGTH_DELIMITED);
const RESPONSE_OK = key(3, LENGTH_DELIMITED);
const RESPONSE_DYNAMIC_METADATA = key(4, LENGTH_DELIMITED);
// google.rpc.Status
const STATUS_CODE = key(1, VARINT);
const STATUS_MESSAGE = key(2, LENGTH_DELIMITED);
// DeniedHttpResponse
const DENIED_STATUS = key(1, LENGTH_DELIMITED);
const DENIED_HEADERS = key(2, LENGTH_DELIMITED);
const DENIED_BODY = key(3, LENGTH_DELIMITED);
// envoy.type.v3.HttpStatus
const HTTP_STATUS_CODE = key(1, VARINT);
// OkHttpResponse
const OK_HEADERS = key(2, LENGTH_DELIMITED);
const OK_HEADERS_TO_REMOVE = key(5, LENGTH_DELIMITED);
const OK_RESPONSE_HEADERS_TO_ADD = key(6, LENGTH_DELIMITED);
// HeaderValueOption, HeaderValue, BoolValue
const OPTION_HEADER = key(1, LENGTH_DELIMITED);
const OPTION_APPEND = key(2, LENGTH_DELIMITED);
const OPTION_APPEND_ACTION = key(3, VARINT);
const HEADER_KEY = key(1, LENGTH_DELIMITED);
const HEADER_VALUE = key(2, LENGTH_DELIMITED);
const BOOL_VALUE = key(1, VARINT);
// google.protobuf.Struct, its map entries, Value, ListValue
const STRUCT_FIELDS = key(1, LENGTH_DELIMITED);
const ENTRY_KEY = key(1, LENGTH_DELIMITED);
const ENTRY_VALUE = key(2, LENGTH_DELIMITED);
const VALUE_NULL = key(1, VARINT);
const VALUE_NUMBER = key(2, FIXED64);
const VALUE_STRING = key(3, LENGTH_DELIMITED);
const VALUE_BOOL = key(4, VARINT);
const VALUE_STRUCT = key(5, LENGTH_DELIMITED);
const VALUE_LIST = key(6, LENGTH_DELIMITED);
const LIST_VALUES = key(1, LENGTH_DELIMITED);

export function encodeCheckResponse(decision: Decision): Buffer {
  return decision.allow ? encodeAllow(decision) : encodeDeny(decision);
}

/**
 * A message as a flat list of fields, made by a sizing pass that reads every
 * value once, so the writing pass needs no Writer, no fork per nested message
 * and no value read twice (a getter could answer differently the second
 * time). Each field is its key (one byte: every field number here is below
 * 16) and a number: a varint's value, a double, or the byte length of a
 * string (then in `texts`) or of the nested message that follows.
 */
class Plan {
  readonly keys: number[] = [];
  readonly numbers: number[] = [];
  readonly texts: Array<string | null> = [];
  /** Fields planned: the arrays are reused from one message to the next, and may hold more. */
  count = 0;
  /** Bytes of every field planned so far. */
  size = 0;

  /** Empty again, for the next message (the arrays keep their room). */
  reset(): this {
    this.count = 0;
    this.size = 0;
    return this;
  }

  varint(key: number, value: number): void {
    this.#push(key, value, null);
    this.size += 1 + varintLength(value);
  }

  double(key: number, value: number): void {
    this.#push(key, value, null);
    this.size += 9;
  }

  string(key: number, text: string): void {
    const length = text.length <= MAX_COPIED_LENGTH && isAscii(text) ? text.length : Buffer.byteLength(text, 'utf8');
    this.#push(key, length, text);
    this.size += 1 + varintLength(length) + length;
  }

  /** Starts a nested message: `close` it with the returned mark once its fields are planned. */
  open(key: number): number {
    // Where the message starts, until close puts its length here.
    this.#push(key, this.size, null);
    return this.count - 1;
  }

  close(mark: number): void {
    const length = this.size - this.numbers[mark]!;
    this.numbers[mark] = length;
    this.size += 1 + varintLength(length);
  }

  #push(key: number, value: number, text: string | null): void {
    const at = this.count;
    this.keys[at] = key;
    this.numbers[at] = value;
    this.texts[at] = text;
    this.count = at + 1;
  }

  writeTo(out: Buffer, at: number): number {
    const { keys, numbers, texts, count } = this;
    for (let i = 0; i < count; i += 1) {
      const key = keys[i]!;
      out[at++] = key;
      if ((key & 7) === FIXED64) {
        out.writeDoubleLE(numbers[i]!, at);
        at += 8;
        continue;
      }
      at = writeVarint(out, at, numbers[i]!);
      const text = texts[i]!;
      if (text === null) continue;
      // As many bytes as UTF-16 units: ASCII.
      if (text.length <= MAX_COPIED_LENGTH && numbers[i] === text.length) {
        for (let c = 0; c < text.length; c += 1) out[at++] = text.charCodeAt(c);
      } else {
        at += out.write(text, at, 'utf8');
      }
    }
    // What was written is not kept alive by the next, shorter, message.
    texts.fill(null, 0, count);
    return at;
  }
}

/**
 * Longest ASCII string measured and copied here rather than by Buffer's
 * native calls, which cost more than the copy for a short one (header
 * names, most claim values).
 */
const MAX_COPIED_LENGTH = 64;

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i += 1) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * The plans of the shared parts and of the per-request part: encoding is
 * synchronous and each plan is written out before the next is made, so
 * their arrays serve every answer instead of growing anew for each.
 */
const sharedPlan = new Plan();
const requestPlan = new Plan();

/** Bytes of a message already planned whole. */
function bytesOf(plan: Plan): Buffer {
  const out = Buffer.allocUnsafe(plan.size);
  plan.writeTo(out, 0);
  return out;
}

/** CheckResponse.status with code OK: the same for every allow. */
const NO_HEADERS: readonly HeaderToSet[] = Object.freeze([]);

const STATUS_OK_FIELD = (() => {
  const plan = new Plan();
  const status = plan.open(RESPONSE_STATUS);
  plan.varint(STATUS_CODE, RpcCode.OK);
  plan.close(status);
  return owned(bytesOf(plan));
})();

/**
 * Assembled from parts encoded once (status, the header options, the
 * metadata) and the per-request part, the headers to remove and to add to
 * the client's response, written straight into the one Buffer sent.
 */
function encodeAllow(decision: Allow): Buffer {
  const parts = sharedParts(decision.headers, decision.metadata);
  const toClient = decision.responseHeaders ?? NO_HEADERS;
  let perRequest: Plan | null = null;
  if (decision.removeHeaders.length > 0 || toClient.length > 0) {
    perRequest = requestPlan.reset();
    for (const name of decision.removeHeaders) perRequest.string(OK_HEADERS_TO_REMOVE, name);
    for (const header of toClient) planHeaderOption(perRequest, OK_RESPONSE_HEADERS_TO_ADD, header);
  }
  const okLength = parts.headersLength + (perRequest?.size ?? 0);
  const out = Buffer.allocUnsafe(STATUS_OK_FIELD.length + 1 + varintLength(okLength) + okLength + parts.bytes.length - parts.headersLength);
  let at = STATUS_OK_FIELD.copy(out, 0);
  out[at++] = RESPONSE_OK;
  at = writeVarint(out, at, okLength);
  if (perRequest === null) {
    out.write(parts.bytes, at, 'latin1');
    return out;
  }
  at += out.write(parts.bytes, at, parts.headersLength, 'latin1');
  at = perRequest.writeTo(out, at);
  out.write(parts.bytes.substring(parts.headersLength), at, 'latin1');
  return out;
}

function varintLength(value: number): number {
  let length = 1;
  while (value > 0x7f) {
    value >>>= 7;
    length += 1;
  }
  return length;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value > 0x7f) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}
/**
 * Denies come from a small set (fixed sentences, the configured realms), so
 * each distinct one is encoded once; the memo is bounded all the same.
 */
const denies = new Map<string, Buffer>();
const MAX_REMEMBERED_DENIES = 256;

function encodeDeny(decision: Deny): Buffer {
  const extra = decision.headers?.map((header) => `${header.name}\0${header.value}`).join('\0') ?? '';
  const key = `${decision.status}\0${decision.reason}\0${decision.bearerError}\0${decision.challenge}\0${decision.description}\0${extra}`;
  let bytes = denies.get(key);
  if (bytes === undefined) {
    bytes = owned(writeDeny(decision));
    if (denies.size >= MAX_REMEMBERED_DENIES) denies.clear();
    denies.set(key, bytes);
  }
  return bytes;
}

function writeDeny(decision: Deny): Buffer {
  const plan = new Plan();
  const status = plan.open(RESPONSE_STATUS);
  plan.varint(STATUS_CODE, rpcCodeFor(decision.status));
  plan.string(STATUS_MESSAGE, decision.reason);
  plan.close(status);
  const denied = plan.open(RESPONSE_DENIED);
  const httpStatus = plan.open(DENIED_STATUS);
  plan.varint(HTTP_STATUS_CODE, decision.status);
  plan.close(httpStatus);
  planHeaderOption(plan, DENIED_HEADERS, DENY_CONTENT_TYPE);
  planHeaderOption(plan, DENIED_HEADERS, DENY_CACHE_CONTROL);
  if (decision.challenge) planHeaderOption(plan, DENIED_HEADERS, { name: 'www-authenticate', value: decision.challenge });
  for (const header of decision.headers ?? NO_HEADERS) planHeaderOption(plan, DENIED_HEADERS, header);
  plan.string(DENIED_BODY, denyBody(decision));
  plan.close(denied);
  return bytesOf(plan);
}

/**
 * A copy in memory of its own: a small Buffer.allocUnsafe is a slice of
 * Node's shared 8 KiB pool, and one kept for as long as the process would
 * keep the whole slab alive.
 */
function owned(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

/**
 * Both `append: false` and `append_action: OVERWRITE_IF_EXISTS_OR_ADD`: Envoy
 * versions differ in which one they read, and either alone lets some version
 * add our value beside a client-sent copy.
 */
function planHeaderOption(plan: Plan, key: number, { name, value }: HeaderToSet): void {
  const option = plan.open(key);
  const header = plan.open(OPTION_HEADER);
  plan.string(HEADER_KEY, name);
  plan.string(HEADER_VALUE, value);
  plan.close(header);
  const append = plan.open(OPTION_APPEND);
  plan.varint(BOOL_VALUE, 0);
  plan.close(append);
  plan.varint(OPTION_APPEND_ACTION, OVERWRITE_IF_EXISTS_OR_ADD);
  plan.close(option);
}

const DENY_CONTENT_TYPE: HeaderToSet = { name: 'content-type', value: 'application/json' };
const DENY_CACHE_CONTROL: HeaderToSet = { name: 'cache-control', value: 'no-store' };

/**
 * What allows made from one cached answer share: the `headers` fields of the
 * OkHttpResponse, then the dynamic_metadata field, encoded once and kept as
 * bytes in one Latin-1 string (a Buffer would add an object, an ArrayBuffer
 * and a backing store to every cached answer). Keyed by the metadata object,
 * which every allow made from one evaluation shares with its headers list.
 */
interface Shared {
  readonly headers: readonly HeaderToSet[];
  /** Bytes of the headers fields, at the start of `bytes`. */
  readonly headersLength: number;
  readonly bytes: string;
}

const shared = new WeakMap<Metadata, Shared>();

function sharedParts(headers: readonly HeaderToSet[], metadata: Metadata): Shared {
  let parts = shared.get(metadata);
  if (parts !== undefined && parts.headers === headers) return parts;
  const plan = sharedPlan.reset();
  for (const header of headers) planHeaderOption(plan, OK_HEADERS, header);
  const headersLength = plan.size;
  let bytes: string;
  if (parts === undefined) {
    // dynamic_metadata is level 1.
    const field = plan.open(RESPONSE_DYNAMIC_METADATA);
    planStructFields(plan, metadata, 1);
    plan.close(field);
    bytes = bytesOf(plan).toString('latin1');
  } else {
    // Other headers beside the same metadata (not what decide makes): the metadata is still read only once.
    const metadataField = Buffer.from(parts.bytes.substring(parts.headersLength), 'latin1');
    bytes = Buffer.concat([bytesOf(plan), metadataField]).toString('latin1');
  }
  parts = { headers, headersLength, bytes };
  shared.set(metadata, parts);
  return parts;
}

/**
 * How deep a message may sit in the answer, CheckResponse being level 0.
 * Protobuf's C++ parser (Envoy's) refuses messages nested deeper than 100; a
 * few levels are kept in hand. A value whose contents would go deeper is sent
 * as null: JSON nests three messages a level (Struct, entry, Value).
 */
const MAX_VALUE_LEVEL = 96;

/** Values JSON cannot hold (undefined, functions, non-finite numbers) are left out of a struct. */
function planStructFields(plan: Plan, object: object, structLevel: number): void {
  for (const name of Object.keys(object)) {
    const value = (object as Record<string, unknown>)[name];
    if (!representable(value)) continue;
    const entry = plan.open(STRUCT_FIELDS);
    plan.string(ENTRY_KEY, name);
    const entryValue = plan.open(ENTRY_VALUE);
    planValue(plan, value, structLevel + 2);
    plan.close(entryValue);
    plan.close(entry);
  }
}

function representable(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'object':
      return true;
    case 'number':
      return Number.isFinite(value);
    default:
      return false;
  }
}

/** A JSON value as google.protobuf.Value's fields; in a list, what JSON cannot hold becomes null. */
function planValue(plan: Plan, value: unknown, level: number): void {
  switch (typeof value) {
    case 'string':
      plan.string(VALUE_STRING, value);
      return;
    case 'number':
      if (Number.isFinite(value)) plan.double(VALUE_NUMBER, value);
      else plan.varint(VALUE_NULL, 0);
      return;
    case 'boolean':
      plan.varint(VALUE_BOOL, value ? 1 : 0);
      return;
    case 'object':
      if (value === null || level + 3 > MAX_VALUE_LEVEL) {
        plan.varint(VALUE_NULL, 0);
      } else if (Array.isArray(value)) {
        const list = plan.open(VALUE_LIST);
        for (const item of value) {
          const itemValue = plan.open(LIST_VALUES);
          planValue(plan, item, level + 2);
          plan.close(itemValue);
        }
        plan.close(list);
      } else {
        const struct = plan.open(VALUE_STRUCT);
        planStructFields(plan, value, level + 1);
        plan.close(struct);
      }
      return;
    default:
      plan.varint(VALUE_NULL, 0);
  }
}

function rpcCodeFor(httpStatus: number): number {
  if (httpStatus === 401) return RpcCode.UNAUTHENTICATED;
  if (httpStatus === 403) return RpcCode.PERMISSION_DENIED;
  if (httpStatus === 503 || httpStatus === 502 || httpStatus === 504) return RpcCode.UNAVAILABLE;
  if (httpStatus >= 500) return RpcCode.INTERNAL;
  if (httpStatus === 400) return RpcCode.INVALID_ARGUMENT;
  return RpcCode.PERMISSION_DENIED;
}
