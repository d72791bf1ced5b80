-- 090_params_check.sql — job parameter validation in SQL.
--
-- The SQL twin of lua/sluice/params.lua, so that an application queueing jobs
-- with plain SQL gets the same errors as the daemon:
--
--   sluice.check_params(schema, params)         -> text[] of problems ('{}' if valid)
--   sluice.apply_param_defaults(schema, params) -> params with defaults filled in
--
-- `schema` is the JSON of params.describe() for a job type (as stored in the
-- registry): { "name": { "type": ..., "required": ..., "nullable": ...,
-- "default": ..., "min": ..., "enum": [...], "items": {...}, "fields": {...} } }.
-- Messages, their order (by field path, array indexes numerically, then rule
-- order) and the "did you mean" rule match the Lua side. Lua patterns
-- (`pattern`) are not checked here; the daemon checks them when a run starts.
--
-- Everything is CREATE OR REPLACE, so the file can be applied again. It
-- assumes the `sluice` schema exists. The param_* functions are helpers.

-- ===================================================================== helpers

-- Edit distance: insertions, deletions, substitutions and swaps of adjacent
-- characters each cost 1 (optimal string alignment). Same as the Lua side.
CREATE OR REPLACE FUNCTION sluice.param_edit_distance(a text, b text)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  la integer := char_length(a);
  lb integer := char_length(b);
  ca text[] := regexp_split_to_array(a, '');
  cb text[] := regexp_split_to_array(b, '');
  w integer := lb + 1;          -- row width; d(i, j) is d[i * w + j + 1]
  d integer[];
  v integer;
BEGIN
  IF la = 0 THEN RETURN lb; END IF;
  IF lb = 0 THEN RETURN la; END IF;
  d := array_fill(0, ARRAY[(la + 1) * w]);
  FOR i IN 0..la LOOP d[i * w + 1] := i; END LOOP;
  FOR j IN 0..lb LOOP d[j + 1] := j; END LOOP;
  FOR i IN 1..la LOOP
    FOR j IN 1..lb LOOP
      v := least(d[(i - 1) * w + j + 1] + 1,                  -- deletion
                 d[i * w + j] + 1,                            -- insertion
                 d[(i - 1) * w + j] + CASE WHEN ca[i] = cb[j] THEN 0 ELSE 1 END);
      IF i > 1 AND j > 1 AND ca[i] = cb[j - 1] AND ca[i - 1] = cb[j] THEN
        v := least(v, d[(i - 2) * w + j - 1] + 1);            -- swap
      END IF;
      d[i * w + j + 1] := v;
    END LOOP;
  END LOOP;
  RETURN d[la * w + lb + 1];
END
$$;

-- The candidate nearest to p_name within greatest(2, length / 3) edits; ties
-- go to the smaller name (byte order). NULL when none is near enough.
CREATE OR REPLACE FUNCTION sluice.param_suggest(p_name text, p_candidates text[])
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT c
    FROM (SELECT c, sluice.param_edit_distance(p_name, c) AS dist
            FROM unnest(p_candidates) AS u(c)
           WHERE abs(char_length(c) - char_length(p_name))
                 <= greatest(2, char_length(p_name) / 3)) AS near
   WHERE dist <= greatest(2, char_length(p_name) / 3)
   ORDER BY dist, c COLLATE "C"
   LIMIT 1
$$;

-- A value as shown after "got": "weekly" (quoted, cut at 60 characters),
-- 1.5, true, null, array, object.
CREATE OR REPLACE FUNCTION sluice.param_show(v jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
           WHEN 'string' THEN '"' || CASE WHEN char_length(v #>> '{}') > 60
                                          THEN left(v #>> '{}', 57) || '...'
                                          ELSE v #>> '{}' END || '"'
           WHEN 'number' THEN trim_scale((v #>> '{}')::numeric)::text
           WHEN 'boolean' THEN v #>> '{}'
           WHEN 'null' THEN 'null'
           ELSE jsonb_typeof(v)
         END
$$;

-- "string \"ten\"", "number 5", "array": the kind, then the value for scalars.
CREATE OR REPLACE FUNCTION sluice.param_show_typed(v jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) IN ('string', 'number', 'boolean')
              THEN jsonb_typeof(v) || ' ' || sluice.param_show(v)
              ELSE jsonb_typeof(v) END
$$;

-- "hour, day, week": the allowed values of an enum, strings unquoted.
CREATE OR REPLACE FUNCTION sluice.param_show_enum(p_enum jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT string_agg(CASE WHEN jsonb_typeof(e) = 'string' THEN e #>> '{}'
                         ELSE sluice.param_show(e) END, ', ' ORDER BY o)
    FROM jsonb_array_elements(p_enum) WITH ORDINALITY AS a(e, o)
$$;

-- Display path and sort key of a field inside the object at (path, key);
-- sort keys join segments with chr(1) and zero-pad array indexes.
CREATE OR REPLACE FUNCTION sluice.param_join(p_prefix text, p_name text, p_sep text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_prefix = '' THEN p_name ELSE p_prefix || p_sep || p_name END
$$;

-- ===================================================================== checking

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
      message := format('%s: must be at least %s character(s) long, got %s',
                        p_path, p_spec->>'min_length', len);
      RETURN NEXT;
    END IF;
    IF len > (p_spec->>'max_length')::integer THEN
      message := format('%s: must be at most %s character(s) long, got %s',
                        p_path, p_spec->>'max_length', len);
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
      message := format('%s: must have at least %s item(s), got %s',
                        p_path, p_spec->>'min_items', len);
      RETURN NEXT;
    END IF;
    IF len > (p_spec->>'max_items')::integer THEN
      message := format('%s: must have at most %s item(s), got %s',
                        p_path, p_spec->>'max_items', len);
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

-- Problems with the object p_obj against p_fields (name -> spec): unknown
-- keys (with a suggestion), missing required keys, then each present value.
CREATE OR REPLACE FUNCTION sluice.param_check_fields(p_fields jsonb, p_obj jsonb,
                                                     p_path text, p_key text)
RETURNS TABLE (sort_key text, message text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  names text[] := ARRAY(SELECT jsonb_object_keys(p_fields));
  k text;
  spec jsonb;
  near text;
BEGIN
  FOR k IN SELECT jsonb_object_keys(p_obj) LOOP
    IF NOT p_fields ? k THEN
      near := sluice.param_suggest(k, names);
      sort_key := sluice.param_join(p_key, k, chr(1));
      message := 'unknown parameter ''' || sluice.param_join(p_path, k, '.') || ''''
                 || CASE WHEN near IS NULL THEN ''
                         ELSE ' — did you mean ''' || sluice.param_join(p_path, near, '.') || '''?' END;
      RETURN NEXT;
    END IF;
  END LOOP;
  FOR k, spec IN SELECT f.key, f.value FROM jsonb_each(p_fields) AS f LOOP
    IF p_obj ? k THEN
      RETURN QUERY SELECT * FROM sluice.param_check_value(
        spec, p_obj->k, sluice.param_join(p_path, k, '.'), sluice.param_join(p_key, k, chr(1)));
    ELSIF coalesce((spec->>'required')::boolean, false) AND NOT spec ? 'default' THEN
      sort_key := sluice.param_join(p_key, k, chr(1));
      message := sluice.param_join(p_path, k, '.') || ': is required';
      RETURN NEXT;
    END IF;
  END LOOP;
END
$$;

-- Every problem with p_params under p_schema (the JSON of params.describe()),
-- sorted like the Lua side; an empty array when the parameters are valid.
-- A NULL p_params counts as '{}'; a NULL p_schema declares no parameters.
CREATE OR REPLACE FUNCTION sluice.check_params(p_schema jsonb, p_params jsonb)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_params IS NULL OR p_params = '[]'::jsonb THEN
    p_params := '{}'::jsonb;
  END IF;
  IF jsonb_typeof(p_params) <> 'object' THEN
    RETURN ARRAY['parameters must be a JSON object'];
  END IF;
  RETURN ARRAY(
    SELECT r.message
      FROM sluice.param_check_fields(coalesce(p_schema, '{}'::jsonb), p_params, '', '')
           WITH ORDINALITY AS r(sort_key, message, ord)
     ORDER BY r.sort_key COLLATE "C", r.ord);
END
$$;

-- ===================================================================== defaults

-- A value with the defaults of its nested object fields filled in (also
-- inside arrays), and an empty array/object normalised to its declared type.
CREATE OR REPLACE FUNCTION sluice.param_fill_value(p_spec jsonb, p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_spec->>'type' = 'array' AND p_value = '{}'::jsonb THEN
    RETURN '[]'::jsonb;
  END IF;
  IF p_spec->>'type' = 'object' AND p_value = '[]'::jsonb THEN
    p_value := '{}'::jsonb;
  END IF;
  IF p_spec->>'type' = 'object' AND p_spec ? 'fields' AND jsonb_typeof(p_value) = 'object' THEN
    RETURN sluice.param_fill_fields(p_spec->'fields', p_value);
  END IF;
  IF p_spec->>'type' = 'array' AND p_spec ? 'items' AND jsonb_typeof(p_value) = 'array' THEN
    RETURN (SELECT coalesce(jsonb_agg(sluice.param_fill_value(p_spec->'items', e) ORDER BY o),
                            '[]'::jsonb)
              FROM jsonb_array_elements(p_value) WITH ORDINALITY AS a(e, o));
  END IF;
  RETURN p_value;
END
$$;

-- p_obj with each missing field that has a default set to it.
CREATE OR REPLACE FUNCTION sluice.param_fill_fields(p_fields jsonb, p_obj jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  result jsonb := p_obj;
  k text;
  spec jsonb;
BEGIN
  FOR k, spec IN SELECT f.key, f.value FROM jsonb_each(p_fields) AS f LOOP
    IF result ? k THEN
      result := jsonb_set(result, ARRAY[k], sluice.param_fill_value(spec, result->k));
    ELSIF spec ? 'default' THEN
      result := result || jsonb_build_object(k, sluice.param_fill_value(spec, spec->'default'));
    END IF;
  END LOOP;
  RETURN result;
END
$$;

-- p_params with the defaults of p_schema applied (nested ones included).
-- Explicit nulls are kept and get no default. Check with check_params()
-- first: invalid input is returned with defaults added but not corrected.
CREATE OR REPLACE FUNCTION sluice.apply_param_defaults(p_schema jsonb, p_params jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_params IS NULL OR p_params = '[]'::jsonb THEN
    p_params := '{}'::jsonb;
  END IF;
  IF jsonb_typeof(p_params) <> 'object' THEN
    RETURN p_params;
  END IF;
  RETURN sluice.param_fill_fields(coalesce(p_schema, '{}'::jsonb), p_params);
END
$$;
