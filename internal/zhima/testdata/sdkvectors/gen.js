#!/usr/bin/env node
// Generates vectors.json: Alipay OpenAPI (v2 gateway) request-signing test
// vectors produced by the official Node SDK (alipay-sdk, pinned in package.json).
//
//   npm ci && node gen.js
//
// For every case we call the SDK's own signing function exactly the way
// AlipaySdk#exec() does -- util.sign(method, params, sdk.config) -- and record:
//   params          the object sign() returns minus `sign`, i.e. exactly the
//                   parameters exec() would put in the URL/body
//   signing_string  the exact string the SDK passed to crypto Sign#update()
//   sign            the base64 signature the SDK produced
// Notes on SDK 4.14.0 behaviour (see node_modules/alipay-sdk/dist/commonjs/util.js):
//   - timestamp defaults to "now" (YYYY-MM-DD HH:mm:ss, local time); any key in
//     params overrides the defaults, so we pass a fixed timestamp.
//   - exec() does not send `format` by default; we pass format=JSON explicitly.
//   - bizContent must be an object: the SDK snake_cases its keys (deep) and
//     JSON.stringify()s it; the resulting string is what is signed and sent.
//   - empty values are NOT dropped by the SDK, so every vector is non-empty.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const { AlipaySdk } = require('alipay-sdk');
// util.js is not in the package "exports" map, so load it by file path.
const sdkDir = path.dirname(require.resolve('alipay-sdk'));
const sdkUtil = require(path.join(sdkDir, 'util.js'));
const sdkVersion = require('alipay-sdk/package.json').version;

const here = (f) => path.join(__dirname, f);
const read = (f) => fs.readFileSync(here(f), 'utf8');

// Capture the exact bytes the SDK feeds to its signer. util.js calls
// require('node:crypto').createSign at call time, so wrapping it here sees it.
let captured = null;
const realCreateSign = crypto.createSign;
crypto.createSign = function (algorithm, ...rest) {
  const signer = realCreateSign.call(this, algorithm, ...rest);
  const realUpdate = signer.update;
  signer.update = function (data, encoding) {
    captured = { algorithm, data, encoding };
    return realUpdate.call(this, data, encoding);
  };
  return signer;
};

const APP_ID = '2021000000000001';
const publicKey = read('app_public.pem');

const KEYS = {
  'app_private_pkcs1.pem': { keyType: 'PKCS1', privateKey: read('app_private_pkcs1.pem') },
  'app_private_pkcs8.pem': { keyType: 'PKCS8', privateKey: read('app_private_pkcs8.pem') },
};

// Realistic (fake) biz_content payloads.
const identityParam = JSON.stringify({
  identity_type: 'CERT_INFO',
  cert_type: 'IDENTITY_CARD',
  cert_name: '张三',
  cert_no: '110101199003071234',
});

const certInit = {
  transaction_id: 'ZQ20261126000001',
  product_code: 'w1010100000000002978',
  biz_code: 'FACE',
  identity_param: identityParam,
  merchant_config: JSON.stringify({ return_url: 'https://zhimaq.example.com/zhima/return' }),
};

const scoreBrief = {
  transaction_id: 'ZQ20261126000002',
  product_code: 'w1010100000000002733',
  cert_type: 'IDENTITY_CARD',
  cert_no: '110101199003071234',
  name: '张三',
  admittance_score: 650,
};

const relationQuery = {
  transaction_id: 'ZQ20261126000003',
  product_code: 'w1010100001000001200',
  cert_type: 'IDENTITY_CARD',
  cert_no: '110101199003071234',
  name: '张三',
  mobile_no: '15843991158',
};

const M_INIT = 'zhima.customer.certification.initialize';
const M_SCORE = 'zhima.credit.score.brief.get';
const M_REL = 'zhima.credit.relation.query';

const CASES = [
  { name: 'certification.initialize RSA2 pkcs1', method: M_INIT, signType: 'RSA2', key: 'app_private_pkcs1.pem',
    timestamp: '2026-11-26 10:20:30', biz: certInit },
  { name: 'certification.initialize RSA pkcs1', method: M_INIT, signType: 'RSA', key: 'app_private_pkcs1.pem',
    timestamp: '2026-11-26 10:20:31', biz: certInit },
  { name: 'credit.score.brief.get RSA2 pkcs1 (numeric admittance_score)', method: M_SCORE, signType: 'RSA2',
    key: 'app_private_pkcs1.pem', timestamp: '2026-11-26 10:20:32', biz: scoreBrief },
  { name: 'credit.score.brief.get RSA pkcs1', method: M_SCORE, signType: 'RSA', key: 'app_private_pkcs1.pem',
    timestamp: '2026-11-26 10:20:33', biz: scoreBrief },
  { name: 'credit.relation.query RSA2 pkcs1', method: M_REL, signType: 'RSA2', key: 'app_private_pkcs1.pem',
    timestamp: '2026-11-26 10:20:34', biz: relationQuery },
  { name: 'credit.relation.query RSA pkcs1', method: M_REL, signType: 'RSA', key: 'app_private_pkcs1.pem',
    timestamp: '2026-11-26 10:20:35', biz: relationQuery },
  { name: 'credit.score.brief.get RSA2 pkcs1 with app_auth_token', method: M_SCORE, signType: 'RSA2',
    key: 'app_private_pkcs1.pem', timestamp: '2026-11-26 10:20:36', biz: scoreBrief,
    extra: { app_auth_token: '202611BBfake0000000000000000000000X01' } },
  { name: 'raw values: biz_content with & = + / % space < > and non-ASCII (RSA2 pkcs1)', method: M_INIT,
    signType: 'RSA2', key: 'app_private_pkcs1.pem', timestamp: '2026-11-26 10:20:37',
    biz: {
      transaction_id: 'ZQ20261126000004',
      product_code: 'w1010100000000002978',
      biz_code: 'FACE',
      identity_param: JSON.stringify({
        identity_type: 'CERT_INFO',
        cert_type: 'IDENTITY_CARD',
        cert_name: '李四 Lee&Co=1+1/2 100% <ok> “引号” 😀',
        cert_no: '11010119900307123X',
      }),
      merchant_config: JSON.stringify({ return_url: 'https://zhimaq.example.com/cb?a=1&b=x+y%2Fz&c=d e' }),
    } },
  { name: 'certification.initialize RSA2 pkcs8 key', method: M_INIT, signType: 'RSA2', key: 'app_private_pkcs8.pem',
    timestamp: '2026-11-26 10:20:38', biz: certInit },
  { name: 'credit.relation.query RSA pkcs8 key with app_auth_token', method: M_REL, signType: 'RSA',
    key: 'app_private_pkcs8.pem', timestamp: '2026-11-26 10:20:39', biz: relationQuery,
    extra: { app_auth_token: '202611BBfake0000000000000000000000X02' } },
  { name: 'bizContent given with camelCase keys: SDK snake_cases them before signing (RSA2 pkcs1)',
    method: M_SCORE, signType: 'RSA2', key: 'app_private_pkcs1.pem', timestamp: '2026-11-26 23:59:59',
    biz: {
      transactionId: 'ZQ20261126000005',
      productCode: 'w1010100000000002733',
      certType: 'IDENTITY_CARD',
      certNo: '110101199003071234',
      name: '张三',
      admittanceScore: 650,
    } },
];

function must(cond, msg) {
  if (!cond) throw new Error(msg);
}

function newSdk(keyFile, signType) {
  return new AlipaySdk({ appId: APP_ID, signType, charset: 'utf-8', ...KEYS[keyFile] });
}

const vectors = CASES.map((c) => {
  const sdk = newSdk(c.key, c.signType);
  const input = { format: 'JSON', timestamp: c.timestamp, ...(c.extra || {}), bizContent: c.biz };

  captured = null;
  const signed = sdkUtil.sign(c.method, input, sdk.config); // exactly what AlipaySdk#exec() calls
  must(captured && captured.encoding === 'utf8', `${c.name}: signing string not captured`);

  const { sign, ...sent } = signed;
  const params = Object.fromEntries(Object.keys(sent).sort().map((k) => [k, sent[k]]));
  const signingString = captured.data;

  // Sanity checks against the documented rule.
  for (const [k, v] of Object.entries(params)) {
    must(typeof v === 'string' && v !== '', `${c.name}: param ${k} is empty or not a string`);
  }
  must(params.timestamp === c.timestamp && params.format === 'JSON' && params.charset === 'utf-8' &&
       params.version === '1.0' && params.sign_type === c.signType && params.app_id === APP_ID &&
       params.method === c.method, `${c.name}: unexpected params ${JSON.stringify(params)}`);
  const rebuilt = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  must(rebuilt === signingString, `${c.name}: signing string differs from sorted raw key=value join`);
  const algo = c.signType === 'RSA2' ? 'sha256' : 'sha1';
  must(crypto.verify(algo, Buffer.from(signingString, 'utf8'), publicKey, Buffer.from(sign, 'base64')),
    `${c.name}: signature does not verify with app_public.pem`);

  // The same key given bare (one base64 line, as Alipay's key tool prints it)
  // must give the same (deterministic PKCS#1 v1.5) signature.
  if (c.key === 'app_private_pkcs1.pem') {
    const bare = new AlipaySdk({ appId: APP_ID, signType: c.signType, charset: 'utf-8',
      privateKey: read('app_private_bare.txt').trim() });
    must(sdkUtil.sign(c.method, input, bare.config).sign === sign, `${c.name}: bare key gives different sign`);
  }

  return {
    name: c.name,
    sign_type: c.signType,
    private_key_file: c.key,
    params,
    signing_string: signingString,
    sign,
  };
});

const out = { generator: `alipay-sdk@${sdkVersion} via gen.js`, vectors };
fs.writeFileSync(here('vectors.json'), JSON.stringify(out, null, 2) + '\n');
console.log(`wrote vectors.json: ${vectors.length} vectors (alipay-sdk@${sdkVersion})`);
