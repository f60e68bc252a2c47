#!/usr/bin/env node
// Generates vectors.json: certificate-SN, AES content-encryption, certificate
// mode request and response-verification vectors, all produced by the
// official Node SDK (alipay-sdk, pinned in package.json).
//
//   npm ci && node gen.js          (after `sh make-pki.sh` if the PKI changed)
//
// SDK functions used (node_modules/alipay-sdk/dist/commonjs/):
//   antcertutil.js  getSN, getSNFromPath, loadPublicKey, loadPublicKeyFromPath
//   util.js         aesEncrypt, aesEncryptText, aesDecrypt, aesDecryptText, sign
//   alipay.js       new AlipaySdk({...cert paths or contents}) -> config.appCertSn,
//                   alipayCertSn, alipayRootCertSn, alipayPublicKey;
//                   exec() (HTTP stubbed), getSignStr, checkResponseSign, rsaCheck
// Every run gives a byte-identical vectors.json (fixed keys, timestamps and
// bodies; PKCS#1 v1.5 signatures and zero-IV AES are deterministic). Any
// inconsistency throws.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const { AlipaySdk } = require('alipay-sdk');
// util.js and antcertutil.js are not in the package "exports" map, so load them by path.
const sdkDir = path.dirname(require.resolve('alipay-sdk'));
const sdkUtil = require(path.join(sdkDir, 'util.js'));
const certUtil = require(path.join(sdkDir, 'antcertutil.js'));
// The X.509 parser the SDK itself uses, only to read each root's signature OID.
const { Certificate } = require(require.resolve('@fidm/x509', { paths: [sdkDir] }));
// exec() posts with urllib's default export; it is stubbed below, no network.
const urllib = require(require.resolve('urllib', { paths: [sdkDir] })).default;
const sdkVersion = require('alipay-sdk/package.json').version;

const here = (f) => path.join(__dirname, f);
const read = (f) => fs.readFileSync(here(f), 'utf8');
const must = (cond, msg) => { if (!cond) throw new Error(msg); };

// Capture what the SDK hashes for an SN (md5) and what it signs.
// antcertutil.js and util.js look these up on node:crypto at call time.
const md5Inputs = [];
let signed = null;
const realCreateHash = crypto.createHash;
crypto.createHash = function (algorithm, ...rest) {
  const h = realCreateHash.call(this, algorithm, ...rest);
  if (algorithm === 'md5') {
    const update = h.update;
    h.update = function (data, enc) { md5Inputs.push(data); return update.call(this, data, enc); };
  }
  return h;
};
const realCreateSign = crypto.createSign;
crypto.createSign = function (algorithm, ...rest) {
  const s = realCreateSign.call(this, algorithm, ...rest);
  const update = s.update;
  s.update = function (data, enc) { signed = { algorithm, data, enc }; return update.call(this, data, enc); };
  return s;
};

const APP_ID = '2021000000000001';
const APP_KEY_FILE = '../sdkvectors/app_private_pkcs1.pem';
const FILES = {
  app: 'appCertPublicKey_2021000000000001.crt',
  alipay: 'alipayCertPublicKey_RSA2.crt',
  root: 'alipayRootCert.crt',
};
const RSA_OID_PREFIX = '1.2.840.113549.1.1'; // the SDK's own test (string startsWith)

// ---- certificate SNs ----------------------------------------------------

function pemBlocks(text) {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g);
}

// snOf calls the SDK's getSN and returns the SN with the string it hashed.
function snOf(content, isRoot) {
  md5Inputs.length = 0;
  const sn = certUtil.getSN(content, isRoot);
  must(/^[0-9a-f]{32}(_[0-9a-f]{32})*$/.test(sn), `getSN gave ${sn}`);
  return { sn, inputs: md5Inputs.map(String) };
}

// certEntry describes the first certificate of a PEM text: its SDK SN and
// what the SDK hashed, checked against node:crypto's own reading of the serial.
function certEntry(pem) {
  const { sn, inputs } = snOf(pem, false);
  must(inputs.length === 1, 'getSN hashed more than once');
  const serial = BigInt('0x' + new crypto.X509Certificate(pem).serialNumber).toString(10);
  must(inputs[0].endsWith(serial), `SN input ${inputs[0]} does not end with the decimal serial ${serial}`);
  must(realCreateHash('md5').update(inputs[0], 'utf8').digest('hex') === sn, 'SN is not md5 of its input');
  return { sn, sn_input: inputs[0], serial_decimal: serial };
}

const appPem = read(FILES.app);
const alipayPem = read(FILES.alipay);
const rootPem = read(FILES.root);

const app = { file: FILES.app, ...certEntry(appPem) };
must(certUtil.getSNFromPath(here(FILES.app), false) === app.sn, 'getSNFromPath differs from getSN (app)');
const appKey = certUtil.loadPublicKey(appPem);
const appPublicBody = read('../sdkvectors/app_public.pem').replace(/-----[^-]+-----|\s/g, '');
must(appKey === appPublicBody, 'app certificate key is not ../sdkvectors/app_public.pem');

const alipayBlocks = pemBlocks(alipayPem);
must(alipayBlocks.length === 2, 'alipay certificate file should be leaf + intermediate');
const alipay = { file: FILES.alipay, ...certEntry(alipayPem) };
must(certEntry(alipayBlocks[0]).sn === alipay.sn, 'SN of the alipay file is not the SN of its first certificate');
must(certUtil.getSNFromPath(here(FILES.alipay), false) === alipay.sn, 'getSNFromPath differs from getSN (alipay)');
const alipayKeyB64 = certUtil.loadPublicKey(alipayPem);
must(certUtil.loadPublicKeyFromPath(here(FILES.alipay)) === alipayKeyB64, 'loadPublicKeyFromPath differs');
const leafSpki = new crypto.X509Certificate(alipayBlocks[0]).publicKey.export({ type: 'spki', format: 'der' });
must(Buffer.from(alipayKeyB64, 'base64').equals(leafSpki), 'loadPublicKey is not the leaf certificate key');

const rootSN = snOf(rootPem, true);
const rootCerts = pemBlocks(rootPem).map((pem, index) => {
  const oid = Certificate.fromPEM(Buffer.from(pem)).signatureOID;
  return { index, signature_oid: oid, in_root_sn: oid.startsWith(RSA_OID_PREFIX), ...certEntry(pem) };
});
must(rootCerts.length === 4 && !rootCerts[0].in_root_sn && rootCerts[1].in_root_sn &&
     !rootCerts[2].in_root_sn && rootCerts[3].in_root_sn, 'root file should be EC, RSA, SM2, RSA');
must(rootSN.sn === rootCerts.filter((c) => c.in_root_sn).map((c) => c.sn).join('_'),
  'root SN is not the RSA roots\' SNs joined by _');
must(certUtil.getSNFromPath(here(FILES.root), true) === rootSN.sn, 'getSNFromPath differs from getSN (root)');
const root = { file: FILES.root, sn: rootSN.sn, certs: rootCerts };

// The constructor, in certificate mode, by path and by content: the same
// values the SDK then sends and checks with.
const AES_KEY = 'yG0piZeywwwEsYJOAi84EA==';
const privateKey = read(APP_KEY_FILE);
const base = { appId: APP_ID, privateKey, signType: 'RSA2', charset: 'utf-8', encryptKey: AES_KEY };
const sdk = new AlipaySdk({ ...base, appCertPath: here(FILES.app), alipayPublicCertPath: here(FILES.alipay),
  alipayRootCertPath: here(FILES.root) });
const sdkByContent = new AlipaySdk({ ...base, appCertContent: appPem, alipayPublicCertContent: alipayPem,
  alipayRootCertContent: rootPem });
for (const c of [sdk.config, sdkByContent.config]) {
  must(c.appCertSn === app.sn && c.alipayCertSn === alipay.sn && c.alipayRootCertSn === root.sn,
    'AlipaySdk config SNs differ from getSN');
  must(c.alipayPublicKey === `-----BEGIN PUBLIC KEY-----\n${alipayKeyB64}\n-----END PUBLIC KEY-----`,
    'AlipaySdk config.alipayPublicKey differs from loadPublicKey');
}
alipay.public_key_pem = sdk.config.alipayPublicKey;

// ---- AES --------------------------------------------------------------

const AES_KEYS = [AES_KEY, '2rzKIGN+BlFTTpWVaJSVChHrSZzmX7ol', '1i/rylxDB8ZZxKuAIY163m8sJ6A7igNbrRK9KYMOC54='];
const WRONG_KEY = 'tWe8ySI7pmTBeLZq8TWuoQ==';
const scoreNode = { code: '10000', msg: 'Success', biz_no: 'ZM201611253000000393900404029253', is_admittance: 'Y' };
const PLAINS = [
  { name: 'ASCII JSON', data: scoreNode },
  { name: 'JSON with Chinese', data: { cert_name: '张三', biz_code: 'FACE', msg: '芝麻分准入 ✓' } },
  { name: '32 bytes: a whole padding block', text: '{"transaction_id":"ZQ000000001"}' },
  { name: 'empty object', data: {} },
];

function nodeAes(decrypt, keyB64, input) {
  const key = Buffer.from(keyB64, 'base64');
  const algo = `aes-${key.length * 8}-cbc`;
  const c = decrypt ? crypto.createDecipheriv(algo, key, Buffer.alloc(16)) : crypto.createCipheriv(algo, key, Buffer.alloc(16));
  return decrypt ? Buffer.concat([c.update(input, 'base64'), c.final()]).toString('utf8')
    : Buffer.concat([c.update(input, 'utf8'), c.final()]).toString('base64');
}

must(Buffer.byteLength(PLAINS[2].text) === 32, 'the whole-block plaintext is not 32 bytes');
const aesVectors = [];
for (const key of AES_KEYS) {
  for (const p of PLAINS) {
    const plaintext = p.data ? JSON.stringify(p.data) : p.text;
    const ciphertext = p.data ? sdkUtil.aesEncrypt(p.data, key) : sdkUtil.aesEncryptText(p.text, key);
    const keyBytes = Buffer.from(key, 'base64').length;
    must(sdkUtil.aesEncryptText(plaintext, key) === ciphertext, `${p.name}: aesEncrypt is not aesEncryptText(JSON)`);
    must(sdkUtil.aesDecryptText(ciphertext, key) === plaintext, `${p.name}: SDK round trip failed`);
    must(nodeAes(false, key, plaintext) === ciphertext, `${p.name}: node:crypto aes-${keyBytes * 8}-cbc disagrees`);
    must(nodeAes(true, key, ciphertext) === plaintext, `${p.name}: node:crypto decrypt disagrees`);
    let wrongFails = false;
    try { nodeAes(true, WRONG_KEY, ciphertext); } catch { wrongFails = true; }
    must(wrongFails, `${p.name}: the wrong key happens to give valid padding; pick another WRONG_KEY`);
    aesVectors.push({ name: `${p.name}, ${keyBytes}-byte key`, key, key_bytes: keyBytes, plaintext, ciphertext });
  }
}
// What the SDK does with keys zhimaq refuses (recorded, not vectors).
const sdkTry = (f) => { try { return { result: f() }; } catch (e) { return { error: e.message }; } };
const aesObserved = {
  key_sizes: 'util.aesEncryptText uses crypto-js AES with the base64-decoded key: 16, 24 and 32 bytes all work ' +
    '(AES-128/192/256-CBC, PKCS#7, zero IV); every vector here is from the SDK and equals node:crypto',
  wrong_key_decrypt: sdkTry(() => sdkUtil.aesDecryptText(aesVectors[0].ciphertext, WRONG_KEY)),
  key_15_bytes_encrypt: sdkTry(() => sdkUtil.aesEncryptText('{}', Buffer.alloc(15, 7).toString('base64'))),
  key_not_base64_encrypt: sdkTry(() => sdkUtil.aesEncryptText('{}', '!!!not base64!!!')),
};

// ---- exec() with the HTTP layer stubbed -----------------------------------

let posted = null;
let reply = null;
urllib.request = async (url, options) => {
  posted = { url, data: options.data };
  return { status: 200, headers: {}, data: reply };
};
async function execWith(body, params, options) {
  reply = body;
  posted = null;
  try {
    return { result: await sdk.exec(M_SCORE, params, options) };
  } catch (e) {
    return { error: e.message };
  }
}

// ---- certificate-mode requests -------------------------------------------

const M_SCORE = 'zhima.credit.score.brief.get';
const scoreBrief = {
  transaction_id: 'ZQ20261126000002',
  product_code: 'w1010100000000002733',
  cert_type: 'IDENTITY_CARD',
  cert_no: '110101199003071234',
  name: '张三',
  admittance_score: 650,
};
const REQUESTS = [
  { name: 'credit.score.brief.get RSA2, certificate mode, AES (needEncrypt)', timestamp: '2026-11-26 10:30:00', encrypt: true },
  { name: 'credit.score.brief.get RSA2, certificate mode, no AES', timestamp: '2026-11-26 10:30:01', encrypt: false },
];

async function requestVector(r) {
  const input = { format: 'JSON', timestamp: r.timestamp, bizContent: scoreBrief, ...(r.encrypt ? { needEncrypt: true } : {}) };
  signed = null;
  const out = sdkUtil.sign(M_SCORE, input, sdk.config); // exactly what AlipaySdk#exec() calls
  must(signed && signed.enc === 'utf8' && signed.algorithm === 'RSA-SHA256', `${r.name}: signing not captured`);
  const { sign, ...sent } = out;
  const params = Object.fromEntries(Object.keys(sent).sort().map((k) => [k, sent[k]]));
  must(Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&') === signed.data,
    `${r.name}: signing string is not the sorted raw key=value join of params`);
  must(params.app_cert_sn === app.sn && params.alipay_root_cert_sn === root.sn, `${r.name}: SNs not sent`);
  must(crypto.verify('sha256', Buffer.from(signed.data), read('../sdkvectors/app_public.pem'), Buffer.from(sign, 'base64')),
    `${r.name}: signature does not verify`);
  const bizPlain = JSON.stringify(scoreBrief);
  if (r.encrypt) {
    must(params.encrypt_type === 'AES' && signed.data.includes('&encrypt_type=AES&'), `${r.name}: encrypt_type not signed`);
    must(sdkUtil.aesDecryptText(params.biz_content, AES_KEY) === bizPlain, `${r.name}: biz_content does not decrypt`);
  } else {
    must(!('encrypt_type' in params) && params.biz_content === bizPlain, `${r.name}: unexpected biz_content`);
  }
  // exec() must send exactly these params (URL query + form body).
  await execWith('{}', input, {});
  const sentByExec = { ...posted.data };
  for (const [k, v] of new URL(posted.url).searchParams) sentByExec[k] = v;
  must(JSON.stringify(Object.keys(sentByExec).sort().map((k) => [k, sentByExec[k]])) ===
       JSON.stringify(Object.entries({ ...params, sign }).sort()), `${r.name}: exec() sends other params`);
  return {
    name: r.name, sign_type: 'RSA2', private_key_file: APP_KEY_FILE, aes_key: r.encrypt ? AES_KEY : '',
    biz_content_plaintext: bizPlain, params, signing_string: signed.data, sign,
  };
}

// ---- certificate-mode responses -------------------------------------------

// Each body is signed with the Alipay leaf key over the node exactly as it
// stands in the body (an encrypted node: the JSON string, quotes included).
const leafKey = read('alipay_leaf.key');
const responseKey = M_SCORE.replaceAll('.', '_') + '_response';
const RESPONSES = [
  { name: 'credit.score.brief.get, encrypted node (JSON string)', encrypt: true },
  { name: 'credit.score.brief.get, plain node (JSON object)', encrypt: false },
];

async function responseVector(r) {
  const nodePlain = JSON.stringify(scoreNode);
  const node = r.encrypt ? JSON.stringify(sdkUtil.aesEncryptText(nodePlain, AES_KEY)) : nodePlain;
  const sign = crypto.sign('sha256', Buffer.from(node), leafKey).toString('base64');
  const body = `{"${responseKey}":${node},"alipay_cert_sn":"${alipay.sn}","sign":"${sign}"}`;
  must(sdk.rsaCheck(node, sign, 'RSA2') === true, `${r.name}: rsaCheck rejects the node as it stands`);
  if (r.encrypt) {
    must(sdk.rsaCheck(JSON.parse(node), sign, 'RSA2') === false, `${r.name}: rsaCheck accepts the unquoted text`);
  }
  const checked = sdkTry(() => { sdk.checkResponseSign(body, responseKey, sign, ''); return 'accepted'; });
  const params = { bizContent: scoreBrief, ...(r.encrypt ? { needEncrypt: true } : {}) };
  const execChecked = await execWith(body, params, { validateSign: true });
  const execUnchecked = await execWith(body, params, {});
  must(execUnchecked.result && execUnchecked.result.isAdmittance === 'Y', `${r.name}: exec() cannot read the answer`);
  if (!r.encrypt) {
    must(sdk.getSignStr(body, responseKey) === node && checked.result === 'accepted' && execChecked.result,
      `${r.name}: the SDK does not verify a plain node`);
  }
  return {
    name: r.name, method: M_SCORE, encrypted: r.encrypt, aes_key: r.encrypt ? AES_KEY : '', body,
    alipay_cert_sn: alipay.sn, node_plaintext: nodePlain, signed_content: node, sign,
    sdk_rsa_check_signed_content: true,
    sdk_get_sign_str: sdk.getSignStr(body, responseKey),
    sdk_check_response_sign: checked.result || `rejected: ${checked.error.split('，')[0]}`,
    sdk_exec_validate_sign: execChecked.result ? 'accepted' : `rejected: ${execChecked.error.split('，')[0]}`,
  };
}

(async () => {
  const requests = [];
  for (const r of REQUESTS) requests.push(await requestVector(r));
  const responses = [];
  for (const r of RESPONSES) responses.push(await responseVector(r));
  const out = {
    generator: `alipay-sdk@${sdkVersion} via gen.js`,
    certs: { app_cert: app, alipay_cert: alipay, root_cert: root },
    aes: { wrong_key: WRONG_KEY, observed: aesObserved, vectors: aesVectors },
    requests,
    responses,
  };
  fs.writeFileSync(here('vectors.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote vectors.json: SNs, ${aesVectors.length} AES, ${requests.length} request, ` +
    `${responses.length} response vectors (alipay-sdk@${sdkVersion})`);
})().catch((e) => { console.error(e); process.exit(1); });
