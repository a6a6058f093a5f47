// Passkey ceremonies for buttons marked data-passkey="register|signin|verify".
// Everything else on these pages works without JavaScript; passkeys need the browser's API.
(function () {
  "use strict";
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (data) {
        // The server asks the person to confirm it is them first (a recent sign-in).
        if (r.status === 401 && data.redirect) { window.location.assign(data.redirect); }
        if (!r.ok) { throw new Error(data.error || "failed"); }
        return data;
      });
    });
  }
  function show(button, message) {
    var out = document.getElementById(button.dataset.passkeyStatus || "passkey-status");
    if (out) { out.textContent = message; out.hidden = false; }
  }
  document.querySelectorAll("button[data-passkey]").forEach(function (button) {
    if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON) {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function (event) {
      event.preventDefault();
      var kind = button.dataset.passkey;
      post(button.dataset.options).then(function (options) {
        if (kind === "register") {
          return navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
        }
        return navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
      }).then(function (credential) {
        return post(button.dataset.finish, {credential: credential.toJSON()});
      }).then(function (result) {
        window.location.assign(result.redirect);
      }).catch(function () {
        show(button, button.dataset.failed);
      });
    });
  });
})();
