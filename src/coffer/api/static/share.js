// The share page: on "reveal", proves it holds the key from the link's fragment, fetches
// the ciphertext (counting one read) and decrypts it here, with WebCrypto's AES-256-GCM.
// The key never leaves the browser. Envelope: version 1, 12-byte nonce, ciphertext + tag;
// associated data "coffer/share/v1" (see coffer.crypto.share_cipher).
(function () {
  "use strict";
  var AAD = new TextEncoder().encode("coffer/share/v1");
  var PROOF_LABEL = new TextEncoder().encode("coffer/share/proof/v1");
  var button = document.getElementById("reveal");
  var statusLine = document.getElementById("status");
  var output = document.getElementById("secret");
  var copy = document.getElementById("copy");

  function fromBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function fromBase64Url(text) {
    var normal = text.replace(/-/g, "+").replace(/_/g, "/");
    while (normal.length % 4) normal += "=";
    return fromBase64(normal);
  }

  function toBase64Url(bytes) {
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function say(text) { statusLine.textContent = text; }

  async function proofOf(raw) {
    var joined = new Uint8Array(PROOF_LABEL.length + raw.length);
    joined.set(PROOF_LABEL, 0);
    joined.set(raw, PROOF_LABEL.length);
    return toBase64Url(new Uint8Array(await crypto.subtle.digest("SHA-256", joined)));
  }

  async function reveal() {
    button.disabled = true;
    var fragment = window.location.hash.slice(1);
    if (!fragment) { say("This link is missing its key (the part after #)."); return; }
    if (!window.crypto || !window.crypto.subtle) {
      say("This browser cannot decrypt here: open the link over HTTPS.");
      return;
    }
    var raw;
    try { raw = fromBase64Url(fragment); } catch (e) { raw = null; }
    if (!raw || raw.length !== 32) { say("The key in this link is malformed."); return; }
    var key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
    var response = await fetch(
      "/api/v1/shares/" + encodeURIComponent(button.dataset.token) + "/reveal",
      {
        method: "POST",
        cache: "no-store",
        credentials: "omit",
        headers: { "Content-Type": "application/json", "X-Requested-With": "coffer" },
        body: JSON.stringify({ proof: await proofOf(raw) }),
      }
    );
    if (response.status === 404) {
      say("This link has expired, was already opened, or its key is wrong.");
      return;
    }
    if (response.status === 410) { say("This share is sealed: its read limit was reached."); return; }
    if (!response.ok) { say("The server could not hand out this share (" + response.status + ")."); return; }
    var body = await response.json();
    var envelope = fromBase64(body.ciphertext);
    if (envelope[0] !== 1) { say("This share has a format this page does not know."); return; }
    var plain;
    try {
      plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: envelope.slice(1, 13), additionalData: AAD },
        key,
        envelope.slice(13)
      );
    } catch (e) {
      say("The share could not be decrypted with this link's key.");
      return;
    }
    output.textContent = new TextDecoder().decode(plain);
    output.hidden = false;
    copy.hidden = false;
    var left = body.limits.reads_remaining;
    var sealed = body.limits.status === "sealed";
    say(sealed ? "This was the last read: the share is now sealed." :
        left === 0 ? "This was the last read: the share is now destroyed." :
        left === null ? "Revealed." : "Revealed; " + left + " read(s) remain.");
    button.hidden = true;
  }

  button.addEventListener("click", function () {
    reveal().catch(function () { say("Something went wrong while revealing the share."); });
  });
  copy.addEventListener("click", function () {
    navigator.clipboard.writeText(output.textContent).then(function () { say("Copied."); });
  });
})();
