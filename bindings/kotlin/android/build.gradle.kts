// The AAR: the committed generated Kotlin (../generated), the Flow adapter
// (../src/main/kotlin) and libgaterouter_ffi.so per ABI (build/jniLibs, from cargo-ndk).
// NOT run in this repository's CI: see ../build-aar.sh and bindings/README.md.
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.0"
}

android {
    namespace = "dev.gaterouter"
    compileSdk = 35
    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].java.srcDirs("../generated", "../src/main/kotlin")
    sourceSets["main"].jniLibs.srcDirs("build/jniLibs")
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin { jvmToolchain(17) }

dependencies {
    // The AAR flavour of JNA carries its own libjnidispatch.so for each ABI.
    implementation("net.java.dev.jna:jna:5.19.1@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.11.0")
}
