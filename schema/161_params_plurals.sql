-- 161_params_plurals.sql — parameter problems say "1 item" and "1 character",
-- not "1 item(s)".
--
-- The bounds of a string's length and an array's size were said with "(s)"
-- whatever the number ("must have at least 1 item(s), got 0"). The Lua side
-- (lua/sluice/params.lua, through lua/sluice/plural.lua) and this SQL twin
-- now put the noun in the number its count takes, so that both keep giving the
-- same messages:
--
--   plural(n, one[, many]) → "1 item", "3 items" (many: one || 's' when not given)
--
-- param_check_value() is that of 090_params_check.sql but for those four
-- messages.

CREATE OR REPLACE FUNCTION sluice.plural(p_n numeric, p_one text, p_many text DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_n || ' ' || CASE WHEN p_n = 1 THEN p_one ELSE coalesce(p_many, p_one || 's') END
$$;

-- Problems with one present value, as (sort_key, message) rows in rule order.
-- Unknown types are not checked (the schema comes from params.describe()).
CREATE OR REPLACE FUNCTION sluice.param_check_value(p_spec jsonb, p_value jsonb,
                                                    p_path text, p_key text)
RETURNS TABLE (sort_key text, message text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  t text := p_spec->>'type';
  vt text := jsonb_typeof(p_value);
  must text;
  n numeric;
  len integer;
  elem jsonb;
  idx bigint;
BEGIN
  sort_key := p_key;
  IF vt = 'null' THEN
    IF NOT coalesce((p_spec->>'nullable')::boolean, false) THEN
      message := p_path || ': must not be null';
      RETURN NEXT;
    END IF;
    RETURN;
  END IF;

  must := CASE t WHEN 'string' THEN 'a string' WHEN 'integer' THEN 'an integer'
                 WHEN 'number' THEN 'a number' WHEN 'boolean' THEN 'a boolean'
                 WHEN 'array' THEN 'an array' WHEN 'object' THEN 'an object'
                 WHEN 'uuid' THEN 'a uuid' WHEN 'url' THEN 'an http(s) URL' END;
  IF vt = 'number' THEN
    n := (p_value #>> '{}')::numeric;
  END IF;

  -- the JSON type (an empty array and an empty object stand for each other,
  -- as they do once decoded into Lua)
  IF (t IN ('string', 'uuid', 'url') AND vt <> 'string')
     OR (t = 'number' AND vt <> 'number')
     OR (t = 'integer' AND (vt <> 'number' OR n <> trunc(n)
                            OR n < -9223372036854775808 OR n > 9223372036854775807))
     OR (t = 'boolean' AND vt <> 'boolean')
     OR (t = 'array' AND vt <> 'array' AND p_value <> '{}'::jsonb)
     OR (t = 'object' AND vt <> 'object' AND p_value <> '[]'::jsonb) THEN
    message := p_path || ': must be ' || must || ', got ' || sluice.param_show_typed(p_value);
    RETURN NEXT;
    RETURN;
  END IF;

  IF t = 'string' THEN
    len := char_length(p_value #>> '{}');
    IF len < (p_spec->>'min_length')::integer THEN
      message := format('%s: must be at least %s long, got %s',
                        p_path, sluice.plural((p_spec->>'min_length')::numeric, 'character'), len);
      RETURN NEXT;
    END IF;
    IF len > (p_spec->>'max_length')::integer THEN
      message := format('%s: must be at most %s long, got %s',
                        p_path, sluice.plural((p_spec->>'max_length')::numeric, 'character'), len);
      RETURN NEXT;
    END IF;

  ELSIF t = 'uuid' AND (p_value #>> '{}') !~*
        '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    message := p_path || ': must be a uuid, got ' || sluice.param_show(p_value);
    RETURN NEXT;

  ELSIF t = 'url' AND (p_value #>> '{}') !~*
        E'^https?://[^/?# \t\n\x0b\f\r]+[^ \t\n\x0b\f\r]*$' THEN
    message := p_path || ': must be an http(s) URL, got ' || sluice.param_show(p_value);
    RETURN NEXT;

  ELSIF t IN ('integer', 'number') THEN
    IF p_spec ? 'min' THEN
      IF coalesce((p_spec->>'exclusive_min')::boolean, false) THEN
        IF NOT n > (p_spec->>'min')::numeric THEN
          message := p_path || ': must be greater than ' || sluice.param_show(p_spec->'min')
                     || ', got ' || sluice.param_show(p_value);
          RETURN NEXT;
        END IF;
      ELSIF n < (p_spec->>'min')::numeric THEN
        message := p_path || ': must be at least ' || sluice.param_show(p_spec->'min')
                   || ', got ' || sluice.param_show(p_value);
        RETURN NEXT;
      END IF;
    END IF;
    IF p_spec ? 'max' THEN
      IF coalesce((p_spec->>'exclusive_max')::boolean, false) THEN
        IF NOT n < (p_spec->>'max')::numeric THEN
          message := p_path || ': must be less than ' || sluice.param_show(p_spec->'max')
                     || ', got ' || sluice.param_show(p_value);
          RETURN NEXT;
        END IF;
      ELSIF n > (p_spec->>'max')::numeric THEN
        message := p_path || ': must be at most ' || sluice.param_show(p_spec->'max')
                   || ', got ' || sluice.param_show(p_value);
        RETURN NEXT;
      END IF;
    END IF;

  ELSIF t = 'array' THEN
    len := CASE WHEN vt = 'array' THEN jsonb_array_length(p_value) ELSE 0 END;
    IF len < (p_spec->>'min_items')::integer THEN
      message := format('%s: must have at least %s, got %s',
                        p_path, sluice.plural((p_spec->>'min_items')::numeric, 'item'), len);
      RETURN NEXT;
    END IF;
    IF len > (p_spec->>'max_items')::integer THEN
      message := format('%s: must have at most %s, got %s',
                        p_path, sluice.plural((p_spec->>'max_items')::numeric, 'item'), len);
      RETURN NEXT;
    END IF;
    IF p_spec ? 'items' AND len > 0 THEN
      FOR elem, idx IN SELECT e, o FROM jsonb_array_elements(p_value) WITH ORDINALITY AS a(e, o) LOOP
        RETURN QUERY SELECT * FROM sluice.param_check_value(
          p_spec->'items', elem, p_path || '[' || idx || ']',
          p_key || chr(1) || lpad(idx::text, 10, '0'));
      END LOOP;
    END IF;

  ELSIF t = 'object' AND p_spec ? 'fields' THEN
    RETURN QUERY SELECT * FROM sluice.param_check_fields(
      p_spec->'fields', CASE WHEN vt = 'object' THEN p_value ELSE '{}'::jsonb END,
      p_path, p_key);
  END IF;

  -- enum membership: type enum, and the `enum` rule of strings and numbers
  IF t IN ('enum', 'string', 'integer', 'number') AND p_spec ? 'enum'
     AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_spec->'enum') AS e
                      WHERE e = p_value) THEN
    message := p_path || ': must be one of ' || sluice.param_show_enum(p_spec->'enum')
               || '; got ' || sluice.param_show(p_value);
    RETURN NEXT;
  END IF;
END
$$;
