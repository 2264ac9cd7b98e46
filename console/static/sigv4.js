// AWS Signature Version 4 for the console's requests, as the AWS SDKs sign:
// the canonical request over method, path, query, the signed headers and the
// body's SHA-256; the signing key derived from the secret, date, region and
// service. The server verifies with aws-sdk-go-v2's own signer (api/auth).
//
// Hashing uses WebCrypto where the browser offers it. Browsers offer it only
// in a secure context (HTTPS, or http://localhost and 127.0.0.1), so a page
// served over plain HTTP on another address falls back to softCrypto below,
// a plain SHA-256 (FIPS 180-4) and HMAC (RFC 2104). Both are checked against
// each other by the browser test.

const enc = new TextEncoder();

export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

function bytesOf(v) {
  if (v instanceof Uint8Array) return v;
  return enc.encode(v == null ? '' : String(v));
}

// webCrypto is WebCrypto's SHA-256 and HMAC-SHA256, or null outside a secure context.
export const webCrypto = globalThis.crypto && globalThis.crypto.subtle ? {
  async sha256(data) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytesOf(data)));
  },
  async hmac(key, data) {
    const k = await crypto.subtle.importKey('raw', bytesOf(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return new Uint8Array(await crypto.subtle.sign('HMAC', k, bytesOf(data)));
  },
} : null;

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const ror = (x, n) => (x >>> n) | (x << (32 - n));

function sha256Soft(input) {
  const data = bytesOf(input);
  const len = data.length;
  const buf = new Uint8Array(((len + 9 + 63) >> 6) << 6);
  buf.set(data);
  buf[len] = 0x80;
  const dv = new DataView(buf.buffer);
  dv.setUint32(buf.length - 8, Math.floor(len / 0x20000000)); // high word of the bit length
  dv.setUint32(buf.length - 4, (len * 8) >>> 0);
  const H = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
  const W = new Uint32Array(64);
  for (let off = 0; off < buf.length; off += 64) {
    for (let i = 0; i < 16; i++) W[i] = dv.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const a = W[i - 15], b = W[i - 2];
      W[i] = W[i - 16] + (ror(a, 7) ^ ror(a, 18) ^ (a >>> 3)) + W[i - 7] + (ror(b, 17) ^ ror(b, 19) ^ (b >>> 10));
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) >>> 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      h = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  H.forEach((v, i) => ov.setUint32(4 * i, v));
  return out;
}

function hmacSoft(key, data) {
  let k = bytesOf(key);
  if (k.length > 64) k = sha256Soft(k);
  const inner = new Uint8Array(64 + bytesOf(data).length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = (k[i] || 0) ^ 0x36;
    outer[i] = (k[i] || 0) ^ 0x5c;
  }
  inner.set(bytesOf(data), 64);
  outer.set(sha256Soft(inner), 64);
  return sha256Soft(outer);
}

// softCrypto is the same interface as webCrypto, in plain JavaScript.
export const softCrypto = {
  async sha256(data) { return sha256Soft(data); },
  async hmac(key, data) { return hmacSoft(key, data); },
};

export const defaultCrypto = webCrypto || softCrypto;

// amzDate renders a date in SigV4's ISO 8601 basic format.
export function amzDate(d) {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

// uriEncode is RFC 3986 percent-encoding, as SigV4 canonicalizes.
function uriEncode(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function canonicalPath(path) {
  return path.split('/').map(seg => uriEncode(decodeURIComponent(seg))).join('/') || '/';
}

function canonicalQuery(query) {
  const pairs = [...new URLSearchParams(query)].map(([k, v]) => [uriEncode(k), uriEncode(v)]);
  pairs.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
  return pairs.map(([k, v]) => k + '=' + v).join('&');
}

// sign returns the headers to add to a request so that it carries a SigV4
// signature: X-Amz-Date, Authorization and, with a session token,
// X-Amz-Security-Token. req is {method, host, path, query, headers, body};
// every header in req.headers is signed, with host and x-amz-date.
export async function sign(req, { region, service, accessKeyId, secretAccessKey, sessionToken }, date, c = defaultCrypto) {
  const stamp = amzDate(date);
  const day = stamp.slice(0, 8);
  const added = { 'X-Amz-Date': stamp };
  if (sessionToken) added['X-Amz-Security-Token'] = sessionToken;
  const all = { ...req.headers, ...added, host: req.host };
  const names = Object.keys(all).map(n => n.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(all).map(([k, v]) => [k.toLowerCase(), String(v).trim().replace(/\s+/g, ' ')]));
  const signedHeaders = names.join(';');
  const canonical = [
    req.method.toUpperCase(), canonicalPath(req.path || '/'), canonicalQuery(req.query || ''),
    names.map(n => n + ':' + lower[n] + '\n').join(''), signedHeaders, toHex(await c.sha256(bytesOf(req.body))),
  ].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', stamp, scope, toHex(await c.sha256(canonical))].join('\n');
  let key = await c.hmac('AWS4' + secretAccessKey, day);
  for (const part of [region, service, 'aws4_request']) key = await c.hmac(key, part);
  const signature = toHex(await c.hmac(key, toSign));
  added.Authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return added;
}
