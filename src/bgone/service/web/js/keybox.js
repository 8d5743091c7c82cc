/* The API key box in the top bar: shown when the server needs a key, saves it to localStorage.
   Does not know what depends on the key: initKeyBox's onChange (main.js) refreshes those. */
import { apiKey, storeApiKey } from "./api.js";
import { S } from "./state.js";
import { $ } from "./util.js";

export function showKeyBox(needed) {
  const form = $("key-form");
  form.hidden = false;
  form.classList.toggle("needs", needed && !apiKey());
  const state = $("key-state");
  if (needed && !apiKey()) {
    state.textContent = "required";
    state.className = "key-state bad";
  }
}
/** onChange: called after the key was saved or cleared (what shows data that depends on it). */
export function initKeyBox(onChange) {
  const input = $("api-key");
  input.value = apiKey();
  if (S.limits && S.limits.auth_required) {
    showKeyBox(true);
    if (apiKey()) {
      $("key-state").textContent = "saved";
      $("key-state").className = "key-state good";
    }
  }
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = input.value.trim();
    storeApiKey(value);
    $("key-form").classList.toggle("needs", !value);
    $("key-state").textContent = value ? "saved" : "cleared";
    $("key-state").className = `key-state ${value ? "good" : ""}`;
    const err = $("error");
    if (!err.hidden && $("error-title").textContent === "Unauthorized") err.hidden = true;
    onChange();
  });
}
