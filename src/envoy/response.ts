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
import protobuf from 'protobufjs/minimal.js';
import { denyBody, type Allow, type Deny, type Decision, type HeaderToSet, type Metadata } from '../decision.js';

const { Writer } = protobuf;
type Writer = protobuf.Writer;

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

/** CheckResponse.status with code OK: the same for every allow. */
const NO_HEADERS: readonly HeaderToSet[] = Object.freeze([]);

const STATUS_OK_FIELD = (() => {
  const writer = Writer.create();
  writer.uint32(RESPONSE_STATUS).fork().uint32(STATUS_CODE).uint32(RpcCode.OK).ldelim();
  return owned(writer.finish());
})();

/**
 * Assembled from parts encoded once (status, the header options, the
 * metadata) and the per-request part, the headers to remove and to add to
 * the client's response.
 */
function encodeAllow(decision: Allow): Buffer {
  const headers = headerBlock(decision.headers);
  const metadata = metadataField(decision.metadata);
  let perRequest: Uint8Array | null = null;
  const toClient = decision.responseHeaders ?? NO_HEADERS;
  if (decision.removeHeaders.length > 0 || toClient.length > 0) {
    const writer = Writer.create();
    for (const name of decision.removeHeaders) writer.uint32(OK_HEADERS_TO_REMOVE).string(name);
    for (const header of toClient) writer.uint32(OK_RESPONSE_HEADERS_TO_ADD).bytes(headerOption(header));
    perRequest = writer.finish();
  }
  const okLength = headers.length + (perRequest?.length ?? 0);
  const out = Buffer.allocUnsafe(STATUS_OK_FIELD.length + 1 + varintLength(okLength) + okLength + metadata.length);
  let at = STATUS_OK_FIELD.copy(out, 0);
  out[at++] = RESPONSE_OK;
  at = writeVarint(out, at, okLength);
  at += out.write(headers, at, 'latin1');
  if (perRequest !== null) {
    out.set(perRequest, at);
    at += perRequest.length;
  }
  out.write(metadata, at, 'latin1');
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

function writeDeny(decision: Deny): Uint8Array {
  const writer = Writer.create();
  writer
    .uint32(RESPONSE_STATUS)
    .fork()
    .uint32(STATUS_CODE)
    .uint32(rpcCodeFor(decision.status))
    .uint32(STATUS_MESSAGE)
    .string(decision.reason)
    .ldelim();
  writer.uint32(RESPONSE_DENIED).fork();
  writer.uint32(DENIED_STATUS).fork().uint32(HTTP_STATUS_CODE).uint32(decision.status).ldelim();
  writer.uint32(DENIED_HEADERS).bytes(DENY_CONTENT_TYPE);
  writer.uint32(DENIED_HEADERS).bytes(DENY_CACHE_CONTROL);
  if (decision.challenge) writer.uint32(DENIED_HEADERS).bytes(headerOption({ name: 'www-authenticate', value: decision.challenge }));
  for (const header of decision.headers ?? NO_HEADERS) writer.uint32(DENIED_HEADERS).bytes(headerOption(header));
  writer.uint32(DENIED_BODY).string(denyBody(decision));
  writer.ldelim();
  return writer.finish();
}

/**
 * A copy in memory of its own: a Writer's small results are slices of Node's
 * shared 8 KiB pool, and one kept for as long as a cache entry would keep the
 * whole slab alive.
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
function headerOption({ name, value }: HeaderToSet): Uint8Array {
  const writer = Writer.create();
  writer.uint32(OPTION_HEADER).fork().uint32(HEADER_KEY).string(name).uint32(HEADER_VALUE).string(value).ldelim();
  writer.uint32(OPTION_APPEND).fork().uint32(BOOL_VALUE).bool(false).ldelim();
  writer.uint32(OPTION_APPEND_ACTION).uint32(OVERWRITE_IF_EXISTS_OR_ADD);
  return writer.finish();
}

const DENY_CONTENT_TYPE = headerOption({ name: 'content-type', value: 'application/json' });
const DENY_CACHE_CONTROL = headerOption({ name: 'cache-control', value: 'no-store' });

/**
 * The `headers` fields of an OkHttpResponse, encoded once per list: allows
 * made from the same cached answer share it. Kept as bytes in a Latin-1
 * string: a Buffer would add an object, an ArrayBuffer and a backing store to
 * every cached answer.
 */
const headerBlocks = new WeakMap<readonly HeaderToSet[], string>();

function headerBlock(headers: readonly HeaderToSet[]): string {
  let block = headerBlocks.get(headers);
  if (block === undefined) {
    const writer = Writer.create();
    for (const header of headers) writer.uint32(OK_HEADERS).bytes(headerOption(header));
    block = asBytes(writer.finish());
    headerBlocks.set(headers, block);
  }
  return block;
}

/** Bytes as a string of one Latin-1 character per byte (Buffer.write(…, 'latin1') puts them back). */
function asBytes(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
}

/** The dynamic_metadata field, encoded once per metadata object, which allows made from the same cached answer share. */
const metadataFields = new WeakMap<Metadata, string>();

/**
 * How deep a message may sit in the answer, CheckResponse being level 0.
 * Protobuf's C++ parser (Envoy's) refuses messages nested deeper than 100; a
 * few levels are kept in hand. A value whose contents would go deeper is sent
 * as null: JSON nests three messages a level (Struct, entry, Value).
 */
const MAX_VALUE_LEVEL = 96;

function metadataField(metadata: Metadata): string {
  let field = metadataFields.get(metadata);
  if (field === undefined) {
    const writer = Writer.create();
    // dynamic_metadata is level 1.
    writer.uint32(RESPONSE_DYNAMIC_METADATA).fork();
    writeStructFields(writer, metadata, 1);
    writer.ldelim();
    field = asBytes(writer.finish());
    metadataFields.set(metadata, field);
  }
  return field;
}

/** Values JSON cannot hold (undefined, functions, non-finite numbers) are left out of a struct. */
function writeStructFields(writer: Writer, object: object, structLevel: number): void {
  for (const name of Object.keys(object)) {
    const value = (object as Record<string, unknown>)[name];
    if (!representable(value)) continue;
    writer.uint32(STRUCT_FIELDS).fork().uint32(ENTRY_KEY).string(name).uint32(ENTRY_VALUE).fork();
    writeValue(writer, value, structLevel + 2);
    writer.ldelim().ldelim();
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
function writeValue(writer: Writer, value: unknown, level: number): void {
  switch (typeof value) {
    case 'string':
      writer.uint32(VALUE_STRING).string(value);
      return;
    case 'number':
      if (Number.isFinite(value)) writer.uint32(VALUE_NUMBER).double(value);
      else writer.uint32(VALUE_NULL).uint32(0);
      return;
    case 'boolean':
      writer.uint32(VALUE_BOOL).bool(value);
      return;
    case 'object':
      if (value === null || level + 3 > MAX_VALUE_LEVEL) {
        writer.uint32(VALUE_NULL).uint32(0);
      } else if (Array.isArray(value)) {
        writer.uint32(VALUE_LIST).fork();
        for (const item of value) {
          writer.uint32(LIST_VALUES).fork();
          writeValue(writer, item, level + 2);
          writer.ldelim();
        }
        writer.ldelim();
      } else {
        writer.uint32(VALUE_STRUCT).fork();
        writeStructFields(writer, value, level + 1);
        writer.ldelim();
      }
      return;
    default:
      writer.uint32(VALUE_NULL).uint32(0);
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
