{
  description = "chaoslab: a resilience lab for clients of replicated services";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      version = "0.1.0";

      # One workspace build per binary; the Cargo.lock pins every crate.
      crate = pkgs: { pname, bin, description }: pkgs.rustPlatform.buildRustPackage {
        inherit pname version;
        src = self;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "-p" pname "--bin" bin ];
        # Integration tests need real peers (apiserver, toxiproxy, redis) on loopback: `nix flake check` runs the unit tests.
        cargoTestFlags = [ "-p" pname "--lib" "--bins" ];
        nativeBuildInputs = [ pkgs.pkg-config ];
        meta = { inherit description; mainProgram = bin; };
      };

      image = pkgs: { name, pkg, args }: pkgs.dockerTools.buildLayeredImage {
        inherit name;
        tag = version;
        contents = [ pkg pkgs.cacert ];
        config = {
          Entrypoint = [ "${pkg}/bin/${pkg.meta.mainProgram}" ] ++ args;
          User = "65532:65532";
        };
      };
    in
    {
      packages = forAll (pkgs: rec {
        chaoslab = crate pkgs { pname = "chaoslab"; bin = "chaoslab"; description = "chaoslab CLI: run the lab locally"; };
        chaoslab-operator = crate pkgs { pname = "chaoslab-operator"; bin = "chaoslab-operator"; description = "chaoslab Kubernetes operator"; };
        chaoslab-loadgen = crate pkgs { pname = "chaoslab-loadgen"; bin = "chaoslab-loadgen"; description = "chaoslab client under test"; };
        # `nix build .#operator-image && kind load image-archive result`
        operator-image = image pkgs { name = "chaoslab/operator"; pkg = chaoslab-operator; args = [ ]; };
        loadgen-image = image pkgs { name = "chaoslab/loadgen"; pkg = chaoslab-loadgen; args = [ ]; };
        default = chaoslab;
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            rustc cargo clippy rustfmt cargo-nextest
            kubectl kind kubernetes-helm toxiproxy redis prometheus go
          ];
        };
      });

      checks = forAll (pkgs: {
        inherit (self.packages.${pkgs.system}) chaoslab chaoslab-operator chaoslab-loadgen;
        clippy = (crate pkgs { pname = "chaoslab"; bin = "chaoslab"; description = "clippy"; }).overrideAttrs (old: {
          pname = "chaoslab-clippy";
          nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
          buildPhase = "cargo clippy --workspace --all-targets --offline -- -D warnings";
          installPhase = "touch $out";
          doCheck = false;
        });
      });
    };
}
